package share

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// State is a record's delivery state. The values are Kafka's RecordState
// ids, which are also the DeliveryState bytes in ShareSnapshot and
// ShareUpdate records (Acquired is never persisted).
type State int8

// The delivery states of KIP-932.
const (
	Available    State = 0
	Acquired     State = 1
	Acknowledged State = 2
	Archived     State = 4
)

func (s State) String() string {
	switch s {
	case Available:
		return "available"
	case Acquired:
		return "acquired"
	case Acknowledged:
		return "acknowledged"
	case Archived:
		return "archived"
	}
	return fmt.Sprintf("state(%d)", int8(s))
}

// AckType is an acknowledgement type as ShareFetch and ShareAcknowledge
// carry it (KIP-932; RENEW is KIP-1222, request version 2).
type AckType int8

// The acknowledgement types.
const (
	AckGap     AckType = 0 // no record at this offset: archived
	AckAccept  AckType = 1 // processed: acknowledged
	AckRelease AckType = 2 // give it back: available again (archived at the limit)
	AckReject  AckType = 3 // unprocessable: archived
	AckRenew   AckType = 4 // extend the acquisition lock
)

// OffsetReset is share.auto.offset.reset: where a share-partition with no
// state starts.
type OffsetReset int8

// The share.auto.offset.reset values; Latest is Kafka's default.
const (
	ResetLatest OffsetReset = iota
	ResetEarliest
)

// Defaults, as Kafka 4.x: group.share.record.lock.duration.ms,
// group.share.delivery.count.limit and
// group.share.partition.max.record.locks (200 in Kafka 4.0, 2000 since).
const (
	DefaultLockDuration       = 30 * time.Second
	DefaultDeliveryCountLimit = 5
	DefaultMaxRecordLocks     = 2000
)

// Config is a share-partition's settings. Zero fields take the defaults.
type Config struct {
	LockDuration       time.Duration
	DeliveryCountLimit int16
	MaxRecordLocks     int
	AutoOffsetReset    OffsetReset
}

func (c Config) withDefaults() Config {
	if c.LockDuration <= 0 {
		c.LockDuration = DefaultLockDuration
	}
	if c.DeliveryCountLimit <= 0 {
		c.DeliveryCountLimit = DefaultDeliveryCountLimit
	}
	if c.MaxRecordLocks <= 0 {
		c.MaxRecordLocks = DefaultMaxRecordLocks
	}
	return c
}

// BatchSpan is one record batch's offsets as read from the log. Skip marks
// a batch with nothing to deliver (a transaction's aborted records under
// read_committed, as Kafka filters them at acquisition, or a control
// batch if the caller chooses not to hand markers out): its offsets are
// archived like gaps.
type BatchSpan struct {
	Base, Last int64
	Skip       bool
}

// AcquiredRange is a range of offsets handed to a member, as ShareFetch's
// AcquiredRecords carries it.
type AcquiredRange struct {
	First, Last   int64
	DeliveryCount int16
}

// AckBatch is one acknowledgement batch: one type for the whole range, or
// one per offset.
type AckBatch struct {
	First, Last int64
	Types       []AckType
}

// StateBatch is a range of offsets sharing a state and delivery count, as
// ShareSnapshot and ShareUpdate records carry them.
type StateBatch struct {
	First, Last   int64
	State         State
	DeliveryCount int16
}

// Update is the change an operation made, to persist before answering:
// StartOffset is the new SPSO, or -1 when it did not move; Batches are the
// changed ranges at or above the SPSO, in persisted form.
type Update struct {
	StartOffset int64
	Batches     []StateBatch
}

// Empty reports whether the Update has nothing to persist.
func (u Update) Empty() bool { return u.StartOffset < 0 && len(u.Batches) == 0 }

// Snapshot is the whole persisted state of a share-partition, as a
// ShareSnapshot record carries it.
type Snapshot struct {
	StartOffset int64
	Batches     []StateBatch
}

// RecordInfo is one offset's state, for inspection.
type RecordInfo struct {
	State         State
	DeliveryCount int16
	Member        string
	Deadline      time.Time
	Gap           bool // the log has no record at this offset
}

type rec struct {
	state    State
	gap      bool
	count    int16
	member   string
	deadline time.Time
}

// persisted is the state and count rec is written with.
func (r *rec) persisted() (State, int16) {
	if r.state == Acquired {
		return Available, r.count
	}
	return r.state, r.count
}

// Partition is one share-partition's state. See the package comment for
// the concurrency contract.
type Partition struct {
	cfg  Config
	spso int64
	recs []rec // recs[i] is offset spso+i; SPEO is spso+len(recs)

	changed []int64 // offsets changed by the current operation
}

// New starts a share-partition with no state at the log's start or end
// offset, as share.auto.offset.reset says.
func New(cfg Config, logStart, logEnd int64) *Partition {
	cfg = cfg.withDefaults()
	start := logEnd
	if cfg.AutoOffsetReset == ResetEarliest {
		start = logStart
	}
	return &Partition{cfg: cfg, spso: start}
}

// Config returns the partition's settings with defaults filled in.
func (p *Partition) Config() Config { return p.cfg }

// SetConfig applies settings changed while the partition is in use (a
// group config altered): the lock duration and the record-lock limit
// from the next acquisition on, the delivery count limit from the next
// acquisition or release (a record at or over a lowered limit is archived
// then). AutoOffsetReset is kept: it only ever placed the start.
func (p *Partition) SetConfig(cfg Config) {
	reset := p.cfg.AutoOffsetReset
	p.cfg = cfg.withDefaults()
	p.cfg.AutoOffsetReset = reset
}

// SPSO returns the share-partition start offset.
func (p *Partition) SPSO() int64 { return p.spso }

// SPEO returns the share-partition end offset: one past the last tracked offset.
func (p *Partition) SPEO() int64 { return p.spso + int64(len(p.recs)) }

// Record returns the state of offset o; ok is false outside [SPSO, SPEO).
func (p *Partition) Record(o int64) (RecordInfo, bool) {
	if o < p.spso || o >= p.SPEO() {
		return RecordInfo{}, false
	}
	r := &p.recs[o-p.spso]
	return RecordInfo{State: r.state, DeliveryCount: r.count, Member: r.member, Deadline: r.deadline, Gap: r.gap}, true
}

// FetchOffset returns where the caller should start reading the log for
// Acquire: the first available offset, or the SPEO.
func (p *Partition) FetchOffset() int64 {
	for i := range p.recs {
		if r := &p.recs[i]; r.state == Available && !r.gap {
			return p.spso + int64(i)
		}
	}
	return p.SPEO()
}

// NextDeadline returns the earliest acquisition lock deadline, and false
// when nothing is acquired.
func (p *Partition) NextDeadline() (time.Time, bool) {
	var min time.Time
	found := false
	for i := range p.recs {
		r := &p.recs[i]
		if r.state == Acquired && (!found || r.deadline.Before(min)) {
			min, found = r.deadline, true
		}
	}
	return min, found
}

// Acquire hands member up to maxRecords available records out of batches,
// the record batches the caller read from the log starting at offset from
// (normally FetchOffset): ascending, not overlapping, and covering every
// record of the log in [from, last batch's Last], so any offset in that
// span that no batch covers has no record (compaction) and is archived.
// Batches are taken whole while fewer than maxRecords are acquired (the
// batch-optimized mode, ShareFetch's default; see AcquireStrict), and
// offsets beyond the SPEO only while fewer than MaxRecordLocks offsets are
// in flight. A record at the delivery count limit is archived instead.
func (p *Partition) Acquire(member string, maxRecords int, from int64, batches []BatchSpan, now time.Time) ([]AcquiredRange, Update, error) {
	return p.acquire(member, maxRecords, false, from, batches, now)
}

// AcquireStrict is Acquire in ShareFetch v2's record-limit mode
// (ShareAcquireMode 1, KIP-1206): never more than maxRecords records, so
// the last batch may be cut.
func (p *Partition) AcquireStrict(member string, maxRecords int, from int64, batches []BatchSpan, now time.Time) ([]AcquiredRange, Update, error) {
	return p.acquire(member, maxRecords, true, from, batches, now)
}

func (p *Partition) acquire(member string, maxRecords int, strict bool, from int64, batches []BatchSpan, now time.Time) ([]AcquiredRange, Update, error) {
	if member == "" {
		return nil, Update{StartOffset: -1}, errors.New("share: acquire: empty member id")
	}
	for i, b := range batches {
		if b.Base > b.Last {
			return nil, Update{StartOffset: -1}, fmt.Errorf("share: acquire: batch %d: base %d after last %d", i, b.Base, b.Last)
		}
		if i > 0 && b.Base <= batches[i-1].Last {
			return nil, Update{StartOffset: -1}, fmt.Errorf("share: acquire: batch %d at %d overlaps or precedes batch %d ending at %d", i, b.Base, i-1, batches[i-1].Last)
		}
	}
	p.changed = p.changed[:0]
	oldStart := p.spso
	var (
		out     []AcquiredRange
		count   int
		cursor  = max(from, p.spso) // offsets below are not judged as gaps
		deadln  = now.Add(p.cfg.LockDuration)
		stopped bool
	)
	acquire := func(o int64, r *rec) {
		if r.count >= p.cfg.DeliveryCountLimit {
			r.state, r.member, r.deadline = Archived, "", time.Time{}
			p.changed = append(p.changed, o)
			return
		}
		r.state, r.member, r.deadline = Acquired, member, deadln
		r.count++
		p.changed = append(p.changed, o)
		count++
		if n := len(out); n > 0 && out[n-1].Last == o-1 && out[n-1].DeliveryCount == r.count {
			out[n-1].Last = o
			return
		}
		out = append(out, AcquiredRange{First: o, Last: o, DeliveryCount: r.count})
	}
	// grow extends the window to cover o (o >= SPEO): offsets before o
	// that nothing has judged yet are Available, o itself is a gap or a
	// record. False at the lock limit.
	grow := func(o int64, gap bool) bool {
		for p.SPEO() <= o {
			if len(p.recs) >= p.cfg.MaxRecordLocks {
				return false
			}
			r := rec{state: Available}
			if gap && p.SPEO() == o {
				r.state, r.gap = Archived, true
			}
			p.recs = append(p.recs, r)
		}
		return true
	}
	markGaps := func(first, last int64) bool {
		for o := max(first, p.spso); o <= last; o++ {
			if len(p.recs) == 0 && o == p.spso {
				// Nothing in flight: a gap at the start just moves it.
				p.spso = last + 1
				return true
			}
			if o < p.SPEO() {
				r := &p.recs[o-p.spso]
				if r.state == Available && !r.gap {
					r.state, r.gap = Archived, true
					p.changed = append(p.changed, o)
				}
				continue
			}
			if !grow(o, true) {
				return false
			}
			p.changed = append(p.changed, o)
		}
		return true
	}
	for _, b := range batches {
		if count >= maxRecords || stopped {
			break
		}
		if b.Last < p.spso {
			cursor = max(cursor, b.Last+1)
			continue
		}
		if b.Base > cursor && !markGaps(cursor, b.Base-1) {
			break
		}
		if b.Skip {
			if !markGaps(b.Base, b.Last) {
				break
			}
			cursor = max(cursor, b.Last+1)
			continue
		}
		for o := max(b.Base, p.spso); o <= b.Last; o++ {
			if strict && count >= maxRecords {
				stopped = true
				break
			}
			if o >= p.SPEO() && !grow(o, false) {
				stopped = true
				break
			}
			r := &p.recs[o-p.spso]
			if r.state == Available && !r.gap {
				acquire(o, r)
			}
		}
		cursor = max(cursor, b.Last+1)
	}
	return out, p.finish(oldStart), nil
}

// validAckTypes checks one batch's shape; v reports INVALID_REQUEST.
func validAckBatch(b AckBatch, prevLast int64, first bool) bool {
	if b.First > b.Last || (!first && b.First <= prevLast) || len(b.Types) == 0 {
		return false
	}
	if len(b.Types) > 1 && int64(len(b.Types)) != b.Last-b.First+1 {
		return false
	}
	for _, t := range b.Types {
		if t < AckGap || t > AckRenew {
			return false
		}
	}
	return true
}

func (b AckBatch) typeAt(o int64) AckType {
	if len(b.Types) == 1 {
		return b.Types[0]
	}
	return b.Types[o-b.First]
}

// Acknowledge applies member's acknowledgements. It returns one Kafka
// error code per batch (0 for success) and applies nothing unless every
// batch is valid, as Kafka fails the partition's acknowledgement as a
// whole: INVALID_REQUEST for a malformed batch (first after last, batches
// not ascending, no types, a type count that is neither 1 nor the range's
// length, an unknown type) or one reaching at or beyond the SPEO;
// INVALID_RECORD_STATE for an offset member does not hold acquired (never
// acquired, acquired by another member, lock expired, already finished).
func (p *Partition) Acknowledge(member string, batches []AckBatch, now time.Time) ([]int16, Update) {
	errs := make([]int16, len(batches))
	failed := false
	for i, b := range batches {
		var prev int64
		if i > 0 {
			prev = batches[i-1].Last
		}
		if !validAckBatch(b, prev, i == 0) {
			errs[i], failed = kerr.InvalidRequest.Code, true
			continue
		}
		if b.Last >= p.SPEO() {
			errs[i], failed = kerr.InvalidRequest.Code, true
			continue
		}
		for o := b.First; o <= b.Last; o++ {
			if o < p.spso {
				errs[i] = kerr.InvalidRecordState.Code
				break
			}
			r := &p.recs[o-p.spso]
			if r.state != Acquired || r.member != member {
				errs[i] = kerr.InvalidRecordState.Code
				break
			}
		}
		if errs[i] != 0 {
			failed = true
		}
	}
	if failed {
		return errs, Update{StartOffset: -1}
	}
	p.changed = p.changed[:0]
	oldStart := p.spso
	for _, b := range batches {
		for o := b.First; o <= b.Last; o++ {
			r := &p.recs[o-p.spso]
			switch b.typeAt(o) {
			case AckAccept:
				r.state, r.member, r.deadline = Acknowledged, "", time.Time{}
			case AckGap, AckReject:
				r.state, r.member, r.deadline = Archived, "", time.Time{}
			case AckRelease:
				p.release(r)
			case AckRenew:
				r.deadline = now.Add(p.cfg.LockDuration)
				continue // nothing durable changed
			}
			p.changed = append(p.changed, o)
		}
	}
	return errs, p.finish(oldStart)
}

// release makes an acquired record available, or archives it at the
// delivery count limit.
func (p *Partition) release(r *rec) {
	r.member, r.deadline = "", time.Time{}
	if r.count >= p.cfg.DeliveryCountLimit {
		r.state = Archived
		return
	}
	r.state = Available
}

// ReleaseMember releases every record member holds (it left the group or
// its share session closed).
func (p *Partition) ReleaseMember(member string) Update {
	p.changed = p.changed[:0]
	oldStart := p.spso
	for i := range p.recs {
		if r := &p.recs[i]; r.state == Acquired && r.member == member {
			p.release(r)
			p.changed = append(p.changed, p.spso+int64(i))
		}
	}
	return p.finish(oldStart)
}

// Unacquire takes back an acquisition whose answer was never sent (the
// client's connection or session went away first): each record of ranges
// that member still holds at the range's delivery count becomes available
// again with its count before that acquisition, as if it had not been
// acquired. Records in other states or held at another count are left
// alone.
func (p *Partition) Unacquire(member string, ranges []AcquiredRange) Update {
	p.changed = p.changed[:0]
	oldStart := p.spso
	for _, ar := range ranges {
		for o := max(ar.First, p.spso); o <= ar.Last && o < p.SPEO(); o++ {
			r := &p.recs[o-p.spso]
			if r.state != Acquired || r.member != member || r.count != ar.DeliveryCount {
				continue
			}
			r.state, r.member, r.deadline = Available, "", time.Time{}
			r.count--
			p.changed = append(p.changed, o)
		}
	}
	return p.finish(oldStart)
}

// Expire releases every record whose acquisition lock deadline is at or
// before now.
func (p *Partition) Expire(now time.Time) Update {
	p.changed = p.changed[:0]
	oldStart := p.spso
	for i := range p.recs {
		if r := &p.recs[i]; r.state == Acquired && !r.deadline.After(now) {
			p.release(r)
			p.changed = append(p.changed, p.spso+int64(i))
		}
	}
	return p.finish(oldStart)
}

// AdvanceLogStart moves the SPSO up to the log's start offset when
// retention or DeleteRecords removed records below it; their state,
// acquired records included, is dropped.
func (p *Partition) AdvanceLogStart(logStart int64) Update {
	p.changed = p.changed[:0]
	oldStart := p.spso
	if logStart > p.spso {
		if logStart >= p.SPEO() {
			p.recs = p.recs[:0]
		} else {
			p.recs = append(p.recs[:0], p.recs[logStart-p.spso:]...)
		}
		p.spso = logStart
	}
	return p.finish(oldStart)
}

// finish advances the SPSO over the finished prefix and builds the Update
// from the offsets changed since the operation began.
func (p *Partition) finish(oldStart int64) Update {
	n := 0
	for n < len(p.recs) && (p.recs[n].state == Acknowledged || p.recs[n].state == Archived) {
		n++
	}
	if n > 0 {
		p.spso += int64(n)
		p.recs = append(p.recs[:0], p.recs[n:]...)
	}
	u := Update{StartOffset: -1}
	if p.spso != oldStart {
		u.StartOffset = p.spso
	}
	ch := p.changed
	sort.Slice(ch, func(i, j int) bool { return ch[i] < ch[j] })
	for i, o := range ch {
		if o < p.spso || (i > 0 && ch[i-1] == o) {
			continue
		}
		st, c := p.recs[o-p.spso].persisted()
		if k := len(u.Batches); k > 0 {
			last := &u.Batches[k-1]
			if last.Last == o-1 && last.State == st && last.DeliveryCount == c {
				last.Last = o
				continue
			}
		}
		u.Batches = append(u.Batches, StateBatch{First: o, Last: o, State: st, DeliveryCount: c})
	}
	p.changed = p.changed[:0]
	return u
}

// InFlight returns [SPSO, SPEO) as ranges in memory form (Acquired kept;
// gaps are Archived), for inspection and tests.
func (p *Partition) InFlight() []StateBatch {
	var out []StateBatch
	for i := range p.recs {
		r := &p.recs[i]
		o := p.spso + int64(i)
		if k := len(out); k > 0 && out[k-1].Last == o-1 && out[k-1].State == r.state && out[k-1].DeliveryCount == r.count {
			out[k-1].Last = o
			continue
		}
		out = append(out, StateBatch{First: o, Last: o, State: r.state, DeliveryCount: r.count})
	}
	return out
}

// Snapshot returns the persisted form of the whole state (ShareSnapshot).
func (p *Partition) Snapshot() Snapshot {
	s := Snapshot{StartOffset: p.spso}
	for i := range p.recs {
		st, c := p.recs[i].persisted()
		o := p.spso + int64(i)
		if k := len(s.Batches); k > 0 && s.Batches[k-1].Last == o-1 && s.Batches[k-1].State == st && s.Batches[k-1].DeliveryCount == c {
			s.Batches[k-1].Last = o
			continue
		}
		s.Batches = append(s.Batches, StateBatch{First: o, Last: o, State: st, DeliveryCount: c})
	}
	return s
}

// Restore builds a Partition from persisted state. Offsets between the
// start offset and the last batch that no batch covers are Available with
// delivery count 0. Records persisted Available come back available with
// their delivery count (an acquisition in flight at a failover is
// redelivered); Acknowledged and Archived ones are never delivered again.
func Restore(cfg Config, s Snapshot) (*Partition, error) {
	p := &Partition{cfg: cfg.withDefaults(), spso: s.StartOffset}
	if s.StartOffset < 0 {
		return nil, fmt.Errorf("share: restore: start offset %d", s.StartOffset)
	}
	for i, b := range s.Batches {
		if b.First > b.Last || (i > 0 && b.First <= s.Batches[i-1].Last) {
			return nil, fmt.Errorf("share: restore: batch %d [%d, %d] out of order", i, b.First, b.Last)
		}
		switch b.State {
		case Available, Acknowledged, Archived:
		default:
			return nil, fmt.Errorf("share: restore: batch %d [%d, %d]: state %d", i, b.First, b.Last, b.State)
		}
		if b.Last < p.spso {
			continue
		}
		for o := max(b.First, p.spso); o <= b.Last; o++ {
			for p.SPEO() < o {
				p.recs = append(p.recs, rec{state: Available})
			}
			p.recs = append(p.recs, rec{state: b.State, count: b.DeliveryCount})
		}
	}
	p.finish(p.spso)
	return p, nil
}

// Apply folds an Update into the snapshot, as a share coordinator replays
// ShareUpdate records over the last ShareSnapshot.
func (s Snapshot) Apply(u Update) Snapshot {
	start := s.StartOffset
	if u.StartOffset >= 0 && u.StartOffset > start {
		start = u.StartOffset
	}
	type cell struct {
		st State
		c  int16
	}
	cells := map[int64]cell{}
	put := func(bs []StateBatch) {
		for _, b := range bs {
			for o := max(b.First, start); o <= b.Last; o++ {
				cells[o] = cell{b.State, b.DeliveryCount}
			}
		}
	}
	put(s.Batches)
	put(u.Batches)
	offs := make([]int64, 0, len(cells))
	for o := range cells {
		offs = append(offs, o)
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	out := Snapshot{StartOffset: start}
	for _, o := range offs {
		c := cells[o]
		if k := len(out.Batches); k > 0 && out.Batches[k-1].Last == o-1 && out.Batches[k-1].State == c.st && out.Batches[k-1].DeliveryCount == c.c {
			out.Batches[k-1].Last = o
			continue
		}
		out.Batches = append(out.Batches, StateBatch{First: o, Last: o, State: c.st, DeliveryCount: c.c})
	}
	return out
}
