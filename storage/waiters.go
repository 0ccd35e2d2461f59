package storage

import (
	"context"
	"slices"
)

// A Log has three kinds of waiters, all guarded by its mu:
//
//   - offset waiters (offsetWaiters): WaitDurable callers, blocked until
//     the durable offset passes theirs, and WaitHighWatermark callers,
//     blocked until the high watermark does. One mechanism serves both:
//     waitOffset registers, blocks and unregisters on cancellation;
//     release, fail and failAll answer them.
//   - notifications (notifySet): AddWaiter channels, signalled once when
//     the high watermark or log start moves (or the log end offset, in
//     replicated mode) or the log stops. The returned cancel unregisters a
//     channel that was never signalled, so a poll that times out leaves
//     nothing behind. Watch functions are called on the same events until
//     cancelled (a leader's fetch sessions: docs/io-and-scale.md, "Scale").

// offsetWaiter is one blocked caller: it waits until the watched offset
// passes off, and ch (capacity 1) receives its answer exactly once.
type offsetWaiter struct {
	off int64
	ch  chan error
}

// offsetWaiters is a set of callers blocked on one of the log's offsets.
type offsetWaiters struct {
	ws []offsetWaiter
}

// add registers a caller waiting until the offset passes off.
func (q *offsetWaiters) add(off int64) chan error {
	ch := make(chan error, 1)
	q.ws = append(q.ws, offsetWaiter{off: off, ch: ch})
	return ch
}

// remove unregisters ch, if it is still waiting.
func (q *offsetWaiters) remove(ch chan error) {
	for i, w := range q.ws {
		if w.ch == ch {
			q.ws = slices.Delete(q.ws, i, i+1)
			return
		}
	}
}

// answer sends err to every waiter for which pick holds and drops them.
func (q *offsetWaiters) answer(pick func(off int64) bool, err error) {
	kept := q.ws[:0]
	for _, w := range q.ws {
		if pick(w.off) {
			w.ch <- err
		} else {
			kept = append(kept, w)
		}
	}
	clear(q.ws[len(kept):])
	q.ws = kept
}

// release answers nil to the waiters the offset now covers: those waiting
// for an offset below upTo.
func (q *offsetWaiters) release(upTo int64) {
	q.answer(func(off int64) bool { return off < upTo }, nil)
}

// fail answers err to the waiters for an offset at or above from.
func (q *offsetWaiters) fail(from int64, err error) {
	q.answer(func(off int64) bool { return off >= from }, err)
}

// failAll answers err to every waiter.
func (q *offsetWaiters) failAll(err error) {
	q.answer(func(int64) bool { return true }, err)
}

func (q *offsetWaiters) len() int { return len(q.ws) }

// waitOffset is the blocking part of WaitDurable and WaitHighWatermark.
// Under l.mu it asks ready whether the wait is over (and with what); if
// not, it registers in q for off and blocks until answered or ctx ends,
// and then unregisters. An answer that raced with the cancellation wins.
func (l *Log) waitOffset(ctx context.Context, q *offsetWaiters, off int64, ready func() (bool, error)) error {
	l.mu.Lock()
	if done, err := ready(); done {
		l.mu.Unlock()
		return err
	}
	ch := q.add(off)
	l.mu.Unlock()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		l.mu.Lock()
		q.remove(ch)
		l.mu.Unlock()
		select {
		case err := <-ch:
			return err
		default:
			return ctx.Err()
		}
	}
}

// notifySet holds the AddWaiter channels, keyed by registration so that
// one channel may be registered on many logs (or twice on one) and each
// registration is removed on its own.
type notifySet struct {
	next  uint64
	m     map[uint64]chan struct{}
	watch map[uint64]func() // Watch: called on every notification
}

func (s *notifySet) add(ch chan struct{}) uint64 {
	if s.m == nil {
		s.m = map[uint64]chan struct{}{}
	}
	s.next++
	s.m[s.next] = ch
	return s.next
}

func (s *notifySet) remove(id uint64) { delete(s.m, id) }

// notifyAll signals every registered channel (without blocking) and
// drops the registrations, and calls every watch function.
func (s *notifySet) notifyAll() {
	for _, fn := range s.watch {
		fn()
	}
	for _, ch := range s.m {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	clear(s.m)
}

func (s *notifySet) len() int { return len(s.m) + len(s.watch) }

// AddWaiter registers ch for one non-blocking send when the high watermark
// next advances (in replicated mode also when the log end offset grows)
// or the log is fenced, closed or deleted; on a log already fenced or
// closed the send happens at once. The registration ends with that send
// or with cancel, which the caller must call when it stops waiting (a
// Fetch long poll that timed out); cancel is idempotent and cheap once
// the send has happened.
func (l *Log) AddWaiter(ch chan struct{}) (cancel func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.fenceErr != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
		return func() {}
	}
	id := l.hwNotify.add(ch)
	return func() {
		l.mu.Lock()
		l.hwNotify.remove(id)
		l.mu.Unlock()
	}
}

// Watch registers fn to be called whenever an AddWaiter channel would be
// signalled (the high watermark or log start moved, in replicated mode the
// log end offset grew, the log was fenced, closed or deleted) until cancel
// is called; on a log already fenced or closed it is called once at once
// and not registered. fn runs under the log's lock: it must not block or
// call into the log. cancel is idempotent.
func (l *Log) Watch(fn func()) (cancel func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.fenceErr != nil {
		fn()
		return func() {}
	}
	s := &l.hwNotify
	if s.watch == nil {
		s.watch = map[uint64]func(){}
	}
	s.next++
	id := s.next
	s.watch[id] = fn
	return func() {
		l.mu.Lock()
		delete(l.hwNotify.watch, id)
		l.mu.Unlock()
	}
}

func (l *Log) notifyHWLocked() { l.hwNotify.notifyAll() }

// waiterCount is how many waiters of every kind are registered (tests).
func (l *Log) waiterCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hwNotify.len() + l.durableWaiters.len() + l.hwWaiters.len()
}
