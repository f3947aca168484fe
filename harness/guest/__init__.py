"""Stage 2, the guest: the image, QEMU (the machine and its console), the accelerator, and the Target every caller uses to reach a booted kernel."""
