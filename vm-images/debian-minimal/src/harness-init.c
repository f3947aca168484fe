// PID 1 of the harness guest, static so that no shell or dynamic loader runs before the SSH
// server: mounts the pseudo file systems, installs the per-run SSH key that the host passed on
// the kernel command line (harness.authkey=TYPE:BASE64), and becomes dropbear.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// seconds since boot (CLOCK_BOOTTIME: close to, not the same clock as, the console's timestamps)
static double uptime(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void mnt(const char *type, const char *dir, const char *opts)
{
	mkdir(dir, 0755);
	if (mount(type, dir, type, 0, opts) != 0 && errno != EBUSY && errno != ENOENT)
		dprintf(2, "harness-init: mount %s on %s: %s\n", type, dir, strerror(errno));
}

static int install_key(void)
{
	char cmdline[4096], line[2048];
	ssize_t n;
	int fd = open("/proc/cmdline", O_RDONLY);
	char *key, *end, *colon;

	if (fd < 0)
		return -1;
	n = read(fd, cmdline, sizeof(cmdline) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	cmdline[n] = '\0';
	key = strstr(cmdline, "harness.authkey=");
	if (!key)
		return -1;
	key += strlen("harness.authkey=");
	end = key + strcspn(key, " \n");
	*end = '\0';
	colon = strchr(key, ':');
	if (!colon)
		return -1;
	*colon = '\0';
	n = snprintf(line, sizeof(line), "%s %s\n", key, colon + 1);
	mkdir("/root/.ssh", 0700);
	fd = open("/root/.ssh/authorized_keys", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, line, (size_t)n) != n)
		return -1;
	return close(fd);
}

int main(void)
{
	static char *const server[] = {
		// -F foreground (dropbear as PID 1 reaps orphans), -E log to the console,
		// -s/-g no password logins at all, -p 22 on the guest side of QEMU's forward.
		"dropbear", "-F", "-E", "-s", "-g", "-p", "22",
		"-r", "/etc/dropbear/dropbear_ed25519_host_key", NULL,
	};
	static char *const env[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", NULL };

	double started = uptime();

	mnt("proc", "/proc", NULL);
	if (install_key() != 0)
		dprintf(2, "harness-init: no usable harness.authkey= on the kernel command line\n");
	mnt("sysfs", "/sys", NULL);
	mnt("devtmpfs", "/dev", NULL);
	mnt("devpts", "/dev/pts", "gid=5,mode=620");
	mnt("tmpfs", "/dev/shm", NULL);
	mnt("tmpfs", "/run", NULL);
	mnt("tmpfs", "/tmp", NULL);
	mnt("debugfs", "/sys/kernel/debug", NULL);	// only there with CONFIG_DEBUG_FS
	dprintf(1, "harness-init: started at %.3f s, starting dropbear at %.3f s\n", started, uptime());
	execve("/usr/sbin/dropbear", server, env);
	dprintf(2, "harness-init: cannot run dropbear: %s\n", strerror(errno));
	return 1;
}
