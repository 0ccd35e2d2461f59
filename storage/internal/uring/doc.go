// Package uring is a small io_uring ring for the storage engine, written
// directly on golang.org/x/sys/unix (io_uring_setup, io_uring_enter). It
// owns one ring file descriptor, the mmapped submission and completion
// rings (one mapping when the kernel has IORING_FEAT_SINGLE_MMAP) and the
// SQE array, and a reaper goroutine that collects completions.
//
// It supports exactly what the storage engine needs: write, writev, read,
// fsync/fdatasync (IORING_FSYNC_DATASYNC) and NOP, optionally linked with
// IOSQE_IO_LINK (for example a write followed by an fdatasync that runs only
// if the write completed in full).
//
// # Use
//
// Build ops with Write, Writev, Read, Fsync, Nop (and .Linked()), then call
// Ring.Do with a slice of them. Do publishes all SQEs and submits them with
// one io_uring_enter (more only if the batch is larger than the ring), then
// blocks until every op has completed and stored its result in Op.Res
// (bytes transferred, or a negated errno). Do returns an error only for
// ring-level failures (closed ring, failed io_uring_enter); per-op failures
// are in Res, and Op.Err converts a negative Res into a syscall.Errno.
//
// # Concurrency contract
//
// A Ring is safe for concurrent use by many goroutines. Submission is
// serialized by one mutex (the kernel serializes it under its own ring lock
// anyway), which also keeps a linked chain contiguous and inside one
// io_uring_enter. The number of ops in flight is bounded by the completion
// queue's size, so the CQ can never overflow; Do blocks for a free slot.
// Completions are reaped by a dedicated goroutine blocked in io_uring_enter
// (GETEVENTS) and, opportunistically, by the submitting goroutine right after
// submission, so ops the kernel completes inline (page-cache reads and
// writes) are returned without a goroutine hand-off.
//
// Buffers: every op's buffers (and the iovec array of a writev) are held by
// its in-flight slot until the completion is reaped, so they stay reachable
// until the kernel is done with them; Go heap memory is not moved by the
// garbage collector. Callers must not modify a buffer while Do runs.
//
// All waits retry on EINTR. Close refuses new ops, waits for the ops in
// flight to complete, stops the reaper, unmaps the rings and closes the ring
// descriptor.
//
// io_uring requests belong to the thread that submitted them; Go threads do
// not exit while the program runs (unless a goroutine exits holding
// runtime.LockOSThread, which this package never does), so this is safe.
package uring
