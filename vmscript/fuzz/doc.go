// Package fuzz is vmscript's differential fuzzer: Generate makes random
// scripts, Compare runs one natively (package vmscript/native) and on vmspace
// (package vmscript/vmspace) and compares the transcripts, Shrink reduces a
// script to a minimal one that still differs, and Run is the fuzz loop behind
// `vmspace fuzz`, which saves each distinct difference as a corpus script.
package fuzz
