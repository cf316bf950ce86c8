// The vmscript agent: a small C program, exec'd by the Go coordinator, that
// runs memory-management requests on itself and answers over a socket.
// The layouts below are mirrored in native.go.

#ifndef VMSCRIPT_AGENT_H
#define VMSCRIPT_AGENT_H

#include <stdint.h>

// Request opcodes.
enum {
	VMS_OP_MMAP = 1,
	VMS_OP_MUNMAP,
	VMS_OP_MPROTECT,
	VMS_OP_MREMAP,
	VMS_OP_MADVISE,
	VMS_OP_MLOCK,
	VMS_OP_MUNLOCK,
	VMS_OP_MLOCKALL,
	VMS_OP_MUNLOCKALL,
	VMS_OP_MSYNC,
	VMS_OP_MINCORE,
	VMS_OP_MSEAL,
	VMS_OP_ANONNAME,
	VMS_OP_BRK,
	VMS_OP_SETRLIMIT,
	VMS_OP_WRITE,
	VMS_OP_FILL,
	VMS_OP_READ,
	VMS_OP_SUM,
	VMS_OP_FILE,
	VMS_OP_MEMFD,
	VMS_OP_FTRUNCATE,
	VMS_OP_PWRITE,
	VMS_OP_PSUM,
	VMS_OP_CLOSE,
	VMS_OP_SHMGET,
	VMS_OP_SHMAT,
	VMS_OP_SHMDT,
	VMS_OP_SHMRM,
	VMS_OP_IOSETUP,
	VMS_OP_IODESTROY,
	VMS_OP_FORK,
};

#define VMS_NAME_MAX 64

// A request: a fixed header followed by datalen bytes of payload. VMS_OP_FORK
// carries the child's socket as SCM_RIGHTS on the header.
struct vms_req {
	uint32_t op;
	uint32_t datalen;
	uint64_t a[6];
	char name[VMS_NAME_MAX]; // NUL-terminated
};

// Fault kinds of vms_resp.fault.
enum { VMS_FAULT_NONE = 0, VMS_FAULT_SEGV = 1, VMS_FAULT_BUS = 2 };

// A response: a fixed header followed by datalen bytes of payload. err is a
// positive errno when the call failed (ret is then meaningless).
struct vms_resp {
	int64_t ret;
	int32_t err;
	uint32_t fault;
	uint64_t v[2];
	uint32_t datalen;
	uint32_t pad;
};

#endif
