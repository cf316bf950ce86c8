package hostarch

// AccessType says which kinds of access are permitted or requested.
type AccessType struct {
	Read    bool
	Write   bool
	Execute bool
}

// Common access types.
var (
	NoAccess    = AccessType{}
	Read        = AccessType{Read: true}
	Write       = AccessType{Write: true}
	Execute     = AccessType{Execute: true}
	ReadWrite   = AccessType{Read: true, Write: true}
	ReadExecute = AccessType{Read: true, Execute: true}
	AnyAccess   = AccessType{Read: true, Write: true, Execute: true}
)

// Effective returns the access the x86-64 MMU actually grants for at: there
// is no write-only or execute-only page, so write or execute imply read.
func (at AccessType) Effective() AccessType {
	if at.Write || at.Execute {
		at.Read = true
	}
	return at
}

// Any reports whether at permits any access.
func (at AccessType) Any() bool { return at.Read || at.Write || at.Execute }

// SupersetOf reports whether at permits every access that o permits.
func (at AccessType) SupersetOf(o AccessType) bool {
	return (at.Read || !o.Read) && (at.Write || !o.Write) && (at.Execute || !o.Execute)
}

// Intersect returns the accesses permitted by both at and o.
func (at AccessType) Intersect(o AccessType) AccessType {
	return AccessType{at.Read && o.Read, at.Write && o.Write, at.Execute && o.Execute}
}

// Union returns the accesses permitted by either at or o.
func (at AccessType) Union(o AccessType) AccessType {
	return AccessType{at.Read || o.Read, at.Write || o.Write, at.Execute || o.Execute}
}

// Prot returns the PROT_* bits for at (PROT_READ=1, PROT_WRITE=2, PROT_EXEC=4).
func (at AccessType) Prot() int {
	p := 0
	if at.Read {
		p |= 1
	}
	if at.Write {
		p |= 2
	}
	if at.Execute {
		p |= 4
	}
	return p
}

// AccessTypeFromProt returns the access type for PROT_* bits (other bits
// ignored).
func AccessTypeFromProt(prot int) AccessType {
	return AccessType{prot&1 != 0, prot&2 != 0, prot&4 != 0}
}

// String returns at as the three letters of /proc/PID/maps, like "rw-".
func (at AccessType) String() string {
	b := [3]byte{'-', '-', '-'}
	if at.Read {
		b[0] = 'r'
	}
	if at.Write {
		b[1] = 'w'
	}
	if at.Execute {
		b[2] = 'x'
	}
	return string(b[:])
}
