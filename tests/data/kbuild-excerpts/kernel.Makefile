obj-y     = fork.o exec_domain.o panic.o
obj-$(CONFIG_PERF_EVENTS) += events/
