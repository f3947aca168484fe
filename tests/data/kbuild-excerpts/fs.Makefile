obj-y				+= nls/
obj-$(CONFIG_PROC_FS)		+= proc/
