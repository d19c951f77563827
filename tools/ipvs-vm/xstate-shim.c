/*
 * LD_PRELOAD shim for Debian's linux.uml (6.1) on hosts whose XSAVE area is
 * larger than UML's fixed 832-byte buffer (AVX-512, AMX).
 *
 * UML saves and restores each guest thread's FPU state with
 * ptrace(PTRACE_{GET,SET}REGSET, NT_X86_XSTATE) and an 832-byte buffer. The
 * host kernel truncates GETREGSET but refuses a SETREGSET that is not the
 * whole XSAVE area (EFAULT), so every guest process dies at its first context
 * switch. This shim keeps a full-size shadow copy per UML buffer: GETREGSET
 * fills the shadow and copies UML's part out of it; SETREGSET writes UML's part
 * into the shadow and hands the kernel the whole area.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>

#define PTRACE_GETREGSET 0x4204
#define PTRACE_SETREGSET 0x4205
#define SLOTS 8192
#define MAX_AREA 65536

struct shadow { void *key; unsigned char *area; };
static struct shadow table[SLOTS];
static size_t area_size;

typedef long (*ptrace_fn)(int, pid_t, void *, void *);

static ptrace_fn real_ptrace(void)
{
	static ptrace_fn fn;
	if (!fn)
		fn = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
	return fn;
}

/* The shadow area of UML buffer `key`, created on first use; NULL when full. */
static unsigned char *shadow_of(void *key)
{
	size_t i = ((uintptr_t)key >> 4) % SLOTS;
	for (size_t n = 0; n < SLOTS; n++, i = (i + 1) % SLOTS) {
		if (table[i].key == key)
			return table[i].area;
		if (!table[i].key) {
			table[i].area = calloc(1, MAX_AREA);
			if (!table[i].area)
				return NULL;
			table[i].key = key;
			return table[i].area;
		}
	}
	return NULL;
}

static long get_full(pid_t pid, unsigned char *area)
{
	struct iovec full = { area, MAX_AREA };
	long rc = real_ptrace()(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &full);
	if (rc == 0)
		area_size = full.iov_len;
	return rc;
}

static long xstate(int req, pid_t pid, struct iovec *iov)
{
	unsigned char *area = shadow_of(iov->iov_base);
	if (!area)
		return real_ptrace()(req, pid, (void *)NT_X86_XSTATE, iov);
	if (req == PTRACE_GETREGSET) {
		long rc = get_full(pid, area);
		if (rc == 0) {
			if (iov->iov_len > area_size)
				iov->iov_len = area_size;
			memcpy(iov->iov_base, area, iov->iov_len);
		}
		return rc;
	}
	if (!area_size || iov->iov_len >= area_size)
		return real_ptrace()(req, pid, (void *)NT_X86_XSTATE, iov);
	memcpy(area, iov->iov_base, iov->iov_len);
	struct iovec full = { area, area_size };
	return real_ptrace()(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &full);
}

long ptrace(int req, ...)
{
	va_list ap;
	va_start(ap, req);
	pid_t pid = va_arg(ap, pid_t);
	void *addr = va_arg(ap, void *);
	void *data = va_arg(ap, void *);
	va_end(ap);
	if ((req == PTRACE_GETREGSET || req == PTRACE_SETREGSET) &&
	    (uintptr_t)addr == NT_X86_XSTATE && data)
		return xstate(req, pid, data);
	return real_ptrace()(req, pid, addr, data);
}
