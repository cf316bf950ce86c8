package ptrace

import (
	"encoding/binary"
	"fmt"
	"reflect"

	"github.com/vmspace/vmspace/memmap"
	"golang.org/x/sys/unix"
)

// stubFile is a host descriptor installed in the stub.
type stubFile struct {
	// hostFD is the host descriptor it was installed from.
	hostFD int
	// file is the memmap.File last mapped through it if its dynamic type
	// is comparable (so that a MapFile of the same File is known to hit
	// without a system call), else nil.
	file memmap.File
	// dev, ino and flags identify the open file description hostFD
	// referred to when installed (fstat and F_GETFL), to detect a host
	// descriptor number reused for another file.
	dev, ino uint64
	flags    int
	// slot is the index in fileCache.slots; the stub descriptor is
	// StubFileFDBase+slot.
	slot int
	// lastUse is fileCache.clock at its last use.
	lastUse uint64
}

// fileCache tracks the host descriptors installed in the stub. It is
// protected by the tracer's mu (see tracer.mu).
type fileCache struct {
	// byFD maps host descriptors to their entries; each is also in slots.
	byFD map[int]*stubFile
	// slots[i] is the entry installed at StubFileFDBase+i, or nil.
	slots [MaxStubFiles]*stubFile
	// clock counts lookups, for least-recently-used replacement.
	clock uint64
	// seq is the data byte of the last descriptor-passing message sent.
	seq byte
}

// stubFD returns the stub descriptor for f, whose host descriptor is
// hostFD, installing it if needed.
func (as *AddressSpace) stubFD(s syscaller, f memmap.File, hostFD int) (*stubFile, error) {
	fc := &as.files
	fc.clock++
	sf := fc.byFD[hostFD]
	if sf != nil && sf.file != nil && sf.file == f {
		// The same File (of a comparable type) as last time. Comparing
		// interfaces of different dynamic types is false, not a panic,
		// and sf.file's type is comparable.
		sf.lastUse = fc.clock
		return sf, nil
	}
	dev, ino, flags, err := describeFD(hostFD)
	if err != nil {
		return nil, fmt.Errorf("ptrace: MapFile: File descriptor %d: %w", hostFD, err)
	}
	if sf != nil {
		if sf.dev == dev && sf.ino == ino && sf.flags == flags {
			sf.file = comparableOrNil(f)
			sf.lastUse = fc.clock
			return sf, nil
		}
		// The host descriptor number now names another file.
		if err := as.dropFile(s, sf); err != nil {
			return nil, err
		}
	}
	slot := -1
	for i, e := range fc.slots {
		if e == nil {
			slot = i
			break
		}
		if slot < 0 || e.lastUse < fc.slots[slot].lastUse {
			slot = i
		}
	}
	if old := fc.slots[slot]; old != nil {
		// Its descriptor is replaced by dup3 below.
		delete(fc.byFD, old.hostFD)
		fc.slots[slot] = nil
	}
	if err := as.install(s, hostFD, StubFileFDBase+slot); err != nil {
		return nil, err
	}
	sf = &stubFile{hostFD: hostFD, file: comparableOrNil(f), dev: dev, ino: ino, flags: flags, slot: slot, lastUse: fc.clock}
	fc.byFD[hostFD] = sf
	fc.slots[slot] = sf
	return sf, nil
}

// dropFile forgets sf and closes its stub descriptor.
func (as *AddressSpace) dropFile(s syscaller, sf *stubFile) error {
	delete(as.files.byFD, sf.hostFD)
	as.files.slots[sf.slot] = nil
	args := [6]uintptr{uintptr(StubFileFDBase + sf.slot)}
	_, err := s.raw(unix.SYS_CLOSE, &args) // EBADF is fine
	return err
}

// comparableOrNil returns f if its dynamic type is comparable.
func comparableOrNil(f memmap.File) memmap.File {
	if reflect.TypeOf(f).Comparable() {
		return f
	}
	return nil
}

// describeFD returns what identifies the open file description behind fd.
func describeFD(fd int) (dev, ino uint64, flags int, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, 0, 0, err
	}
	flags, err = unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return 0, 0, 0, err
	}
	return st.Dev, st.Ino, flags & unix.O_ACCMODE, nil
}

// install sends hostFD to the stub over the socket and installs it at
// stubFD (close-on-exec).
func (as *AddressSpace) install(s syscaller, hostFD, stubFD int) error {
	wrap := func(what string, err error) error {
		return fmt.Errorf("ptrace: installing descriptor %d in the stub: %s: %w", hostFD, what, err)
	}
	// The data byte is a sequence number, so that a message left over
	// from a failed installation is recognised and discarded.
	fc := &as.files
	fc.seq++
	if err := unix.Sendmsg(as.hostSock, []byte{fc.seq}, unix.UnixRights(hostFD), nil, unix.MSG_DONTWAIT); err != nil {
		return wrap("sendmsg", err)
	}
	var got uintptr
	for tries := 0; ; tries++ {
		fd, seq, err := as.recvFD(s)
		if err != nil {
			return wrap("recvmsg", err)
		}
		if seq == fc.seq {
			got = fd
			break
		}
		args := [6]uintptr{fd}
		if _, err := s.raw(unix.SYS_CLOSE, &args); err != nil {
			return err
		}
		if tries == 256 {
			return wrap("recvmsg", fmt.Errorf("message %d never arrived", fc.seq))
		}
	}
	args := [6]uintptr{got, uintptr(stubFD), unix.O_CLOEXEC}
	r, err := s.raw(unix.SYS_DUP3, &args)
	if err != nil {
		return err
	}
	_, dupErr := errnoResult(r)
	args = [6]uintptr{got}
	if _, err := s.raw(unix.SYS_CLOSE, &args); err != nil {
		return err
	}
	if dupErr != nil {
		return wrap("dup3", dupErr)
	}
	return nil
}

// recvFD receives one descriptor in the stub and returns the stub's
// descriptor number and the message's data byte.
func (as *AddressSpace) recvFD(s syscaller) (uintptr, byte, error) {
	m := as.t.comm.mem
	// A fresh msghdr: recvmsg overwrote msg_controllen last time.
	copy(m[commMsghdr:], msghdrTemplate())
	args := [6]uintptr{StubSocketFD, uintptr(StubComm + commMsghdr), unix.MSG_CMSG_CLOEXEC | unix.MSG_DONTWAIT}
	r, err := s.raw(unix.SYS_RECVMSG, &args)
	if err != nil {
		return 0, 0, err
	}
	if _, err := errnoResult(r); err != nil {
		return 0, 0, err
	}
	le := binary.LittleEndian
	ctrlLen := le.Uint64(m[commMsghdr+40:])
	msgFlags := le.Uint32(m[commMsghdr+48:])
	cmsgLen := le.Uint64(m[commCmsg:])
	level := int32(le.Uint32(m[commCmsg+8:]))
	typ := int32(le.Uint32(m[commCmsg+12:]))
	if msgFlags&unix.MSG_CTRUNC != 0 || ctrlLen < uint64(unix.CmsgLen(4)) || cmsgLen != uint64(unix.CmsgLen(4)) || level != unix.SOL_SOCKET || typ != unix.SCM_RIGHTS {
		return 0, 0, fmt.Errorf("no descriptor received (flags %#x, control length %d)", msgFlags, ctrlLen)
	}
	return uintptr(int32(le.Uint32(m[commCmsg+16:]))), m[commByte], nil
}
