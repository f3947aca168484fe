obj-$(CONFIG_UPROBES) += uprobes.o
