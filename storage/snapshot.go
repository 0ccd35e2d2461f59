package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"

	"github.com/tuskdb/tusk/fencing"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const (
	snapshotMagic   = "TSKP"
	snapshotVersion = 2 // 1 (no transaction fields) still loads
	logStartFile    = "log-start-offset"
	logStartMagic   = "TSKL"
	hwFile          = "high-watermark" // replicated logs, written on a clean close
	hwMagic         = "TSKH"
)

var errBadChecksum = errors.New("checksum mismatch")

// encodeSnapshot serializes producer state (format in doc.go).
func encodeSnapshot(entries []fencing.ProducerEntry) []byte {
	return encodeSnapshotVersion(entries, snapshotVersion)
}

// encodeSnapshotVersion writes format version 1 (no transaction fields,
// tests of old snapshots) or 2.
func encodeSnapshotVersion(entries []fencing.ProducerEntry, version uint16) []byte {
	n := 4 + 2 + 4
	for _, e := range entries {
		n += 8 + 2 + 8 + 12 + 1 + len(e.Batches)*24
	}
	b := make([]byte, 0, n+4)
	b = append(b, snapshotMagic...)
	b = binary.BigEndian.AppendUint16(b, version)
	b = binary.BigEndian.AppendUint32(b, uint32(len(entries)))
	for _, e := range entries {
		b = binary.BigEndian.AppendUint64(b, uint64(e.ProducerID))
		b = binary.BigEndian.AppendUint16(b, uint16(e.Epoch))
		b = binary.BigEndian.AppendUint64(b, uint64(e.LastTimestamp))
		if version >= 2 {
			b = binary.BigEndian.AppendUint64(b, uint64(e.TxnFirstOffset))
			b = binary.BigEndian.AppendUint32(b, uint32(e.CoordinatorEpoch))
		}
		b = append(b, byte(len(e.Batches)))
		for _, x := range e.Batches {
			b = binary.BigEndian.AppendUint32(b, uint32(x.FirstSeq))
			b = binary.BigEndian.AppendUint32(b, uint32(x.LastSeq))
			b = binary.BigEndian.AppendUint64(b, uint64(x.FirstOffset))
			b = binary.BigEndian.AppendUint64(b, uint64(x.LastOffset))
		}
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeSnapshot(b []byte) ([]fencing.ProducerEntry, error) {
	if len(b) < 14 || string(b[:4]) != snapshotMagic {
		return nil, errors.New("snapshot: bad header")
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[len(b)-4:]) {
		return nil, fmt.Errorf("snapshot: %w", errBadChecksum)
	}
	v := binary.BigEndian.Uint16(body[4:])
	if v != 1 && v != 2 {
		return nil, fmt.Errorf("snapshot: unknown version %d", v)
	}
	fixed := 19 // v1: producerID, epoch, lastTimestamp, n
	if v >= 2 {
		fixed += 12 // txnFirstOffset, coordinatorEpoch
	}
	count := binary.BigEndian.Uint32(body[6:])
	p := body[10:]
	entries := make([]fencing.ProducerEntry, 0, min(int(count), len(p)/fixed))
	for range count {
		if len(p) < fixed {
			return nil, errors.New("snapshot: truncated entry")
		}
		e := fencing.ProducerEntry{
			ProducerID:       int64(binary.BigEndian.Uint64(p)),
			Epoch:            int16(binary.BigEndian.Uint16(p[8:])),
			LastTimestamp:    int64(binary.BigEndian.Uint64(p[10:])),
			TxnFirstOffset:   fencing.NoTxn,
			CoordinatorEpoch: fencing.NoTxn,
		}
		if v >= 2 {
			e.TxnFirstOffset = int64(binary.BigEndian.Uint64(p[18:]))
			e.CoordinatorEpoch = int32(binary.BigEndian.Uint32(p[26:]))
			if e.TxnFirstOffset < fencing.NoTxn {
				return nil, fmt.Errorf("snapshot: producer %d: transaction first offset %d", e.ProducerID, e.TxnFirstOffset)
			}
		}
		nb := int(p[fixed-1])
		p = p[fixed:]
		if len(p) < nb*24 {
			return nil, errors.New("snapshot: truncated batches")
		}
		for range nb {
			e.Batches = append(e.Batches, fencing.ProducerBatch{
				FirstSeq:    int32(binary.BigEndian.Uint32(p)),
				LastSeq:     int32(binary.BigEndian.Uint32(p[4:])),
				FirstOffset: int64(binary.BigEndian.Uint64(p[8:])),
				LastOffset:  int64(binary.BigEndian.Uint64(p[16:])),
			})
			p = p[24:]
		}
		entries = append(entries, e)
	}
	if len(p) != 0 {
		return nil, errors.New("snapshot: trailing bytes")
	}
	return entries, nil
}

// writeLogStart atomically persists the log start offset.
func writeLogStart(fsys FS, dir string, off int64) error {
	return writeOffsetFile(fsys, dir, logStartFile, logStartMagic, off)
}

// readLogStart loads the checkpoint; found is false when there is none.
func readLogStart(fsys FS, dir string) (off int64, found bool, err error) {
	return readOffsetFile(fsys, dir, logStartFile, logStartMagic)
}

// writeOffsetFile atomically persists one offset (magic, offset, CRC-32C):
// write a temporary file, fsync it, rename it over the checkpoint, fsync
// the directory.
func writeOffsetFile(fsys FS, dir, file, magic string, off int64) error {
	b := make([]byte, 0, 16)
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint64(b, uint64(off))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	name := filepath.Join(dir, file)
	if err := writeFileSync(fsys, name+".tmp", b); err != nil {
		return err
	}
	if err := fsys.Rename(name+".tmp", name); err != nil {
		return err
	}
	return fsys.SyncDir(dir)
}

// readOffsetFile loads an offset checkpoint; found is false when there is
// none.
func readOffsetFile(fsys FS, dir, file, magic string) (off int64, found bool, err error) {
	b, err := readWhole(fsys, filepath.Join(dir, file))
	if err != nil {
		if isNotExist(err) {
			return 0, false, nil
		}
		return 0, false, err
	}
	if len(b) != 16 || string(b[:4]) != magic {
		return 0, false, fmt.Errorf("%s: bad format", file)
	}
	if crc32.Checksum(b[:12], castagnoli) != binary.BigEndian.Uint32(b[12:]) {
		return 0, false, fmt.Errorf("%s: %w", file, errBadChecksum)
	}
	return int64(binary.BigEndian.Uint64(b[4:])), true, nil
}
