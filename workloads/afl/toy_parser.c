// toy_parser: the fuzzing target of the afl workload, compiled on the host with afl-cc.
//
// It parses a small TLV format ("TOY1", then records: type byte, length byte, payload) with a few
// branches per record type, never crashes, and reads its input from stdin. Before the fork server
// starts it maps and touches TOY_HEAP_MIB MiB (default 0) of anonymous memory, so each fork of the
// fork server copies (or, with COW PTE, shares) that many page tables; each run writes a few heap
// pages chosen by the input, as a real target dirties some of its memory.
// The fork server is deferred (__AFL_INIT) to after that heap is touched.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef __AFL_INIT
#define __AFL_INIT() do { } while (0)
#endif

static unsigned char *heap;
static size_t heap_pages;

static void dirty(unsigned value)
{
	if (heap_pages)
		heap[(size_t)(value % heap_pages) * 4096] += 1;
}

static int checksum_ok(const unsigned char *p, size_t n)
{
	unsigned sum = 0;

	if (n < 2)
		return 0;
	for (size_t i = 0; i + 1 < n; i++)
		sum += p[i];
	return (sum & 0xff) == p[n - 1];
}

static int parse_record(unsigned type, const unsigned char *p, size_t n)
{
	switch (type) {
	case 'N':       // number: decimal digits
		for (size_t i = 0; i < n; i++)
			if (p[i] < '0' || p[i] > '9')
				return -1;
		dirty(n);
		return 1;
	case 'S':       // string: printable, "key=value" counts extra
		for (size_t i = 0; i < n; i++)
			if (p[i] < 0x20 || p[i] > 0x7e)
				return -1;
		if (n > 2 && memchr(p, '=', n))
			dirty(n * 7);
		return 2;
	case 'C':       // checksummed block
		if (!checksum_ok(p, n))
			return -1;
		dirty(p[0]);
		if (n > 4 && p[0] == 'F' && p[1] == 'U' && p[2] == 'Z')
			dirty(p[3] * 13u);
		return 3;
	case 'L':       // list of 2-byte big-endian items in increasing order
		if (n % 2)
			return -1;
		for (size_t i = 2; i < n; i += 2)
			if (((p[i] << 8) | p[i + 1]) <= ((p[i - 2] << 8) | p[i - 1]))
				return -1;
		dirty(n / 2);
		return 4;
	case 0:         // end
		return 0;
	default:
		return -1;
	}
}

static int parse(const unsigned char *buf, size_t len)
{
	size_t off = 4;
	int records = 0;

	if (len < 4 || memcmp(buf, "TOY1", 4) != 0)
		return -1;
	while (off + 2 <= len) {
		unsigned type = buf[off], n = buf[off + 1];
		int kind;

		off += 2;
		if (n > len - off)
			return -2;
		kind = parse_record(type, buf + off, n);
		if (kind < 0)
			return -3;
		if (kind == 0)
			break;
		records++;
		off += n;
	}
	return records;
}

int main(void)
{
	static unsigned char buf[4096];
	const char *mib = getenv("TOY_HEAP_MIB");
	size_t size = (size_t)(mib ? strtoul(mib, NULL, 10) : 0) << 20;
	ssize_t len;

	if (size) {
		heap = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (heap == MAP_FAILED)
			return 1;
		madvise(heap, size, MADV_NOHUGEPAGE);   // 4 KiB pages: PTE tables to copy or share
		for (size_t i = 0; i < size; i += 4096)
			heap[i] = 1;
		heap_pages = size / 4096;
	}
	__AFL_INIT();
	len = read(0, buf, sizeof(buf));
	if (len < 0)
		return 1;
	parse(buf, (size_t)len);
	return 0;
}
