package kafkaproto

import (
	"errors"
	"slices"
	"testing"
)

// FuzzParseBatch feeds arbitrary bytes to ValidateBatch, SplitBatches and
// RecordTimestamps. Nothing may panic, and the results must agree with each
// other. Because random bytes almost never carry a valid CRC-32C, every input
// is also tried with its CRC recomputed, so the fuzzer reaches the
// decompression and record decoding behind the checksum.
//
//	go test ./kafkaproto -run '^$' -fuzz FuzzParseBatch
func FuzzParseBatch(f *testing.F) {
	for _, codec := range allTestCodecs {
		for _, logAppend := range []bool{false, true} {
			b := testBatch{codec: codec, baseOffset: 42, firstTS: 1_700_000_000_000, logAppend: logAppend, records: sampleRecords(3)}.build(f)
			f.Add(b)
			f.Add(b[:len(b)-1]) // truncated
			flipped := slices.Clone(b)
			flipped[len(flipped)-2] ^= 0x01 // bad CRC; the CRC fix-up path decodes it
			f.Add(flipped)
		}
	}
	one := testBatch{codec: codecNone, records: sampleRecords(2)}.build(f)
	two := testBatch{codec: codecLZ4, baseOffset: 2, records: sampleRecords(4)}.build(f)
	f.Add(slices.Concat(one, two))
	f.Add(slices.Concat(one, two[:30]))
	f.Add(makeBatch(0, CompressionNone, 3, 0, 0, 0, nil)) // empty batch
	magic1 := slices.Clone(one)
	magic1[offMagic] = 1
	f.Add(magic1)
	f.Add(makeBatch(0, CompressionNone, 0, 0, 0, 1<<30, rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(0))))
	f.Add(makeBatch(0, CompressionSnappy, 0, 0, 0, 1, xerialEncode(rawRecord([]byte{0}, vi(0), vi(0), vi(-1), vi(-1), vi(0)), 4)))
	f.Add([]byte{})
	f.Add(make([]byte, BatchHeaderSize))

	f.Fuzz(func(t *testing.T, data []byte) {
		d := Decompressor{MaxSize: 1 << 20}
		defer d.Close()

		h, verr := ValidateBatch(data)
		if verr == nil {
			if h.Size() != len(data) || h.RecordCount <= 0 || h.LastOffsetDelta != h.RecordCount-1 {
				t.Fatalf("ValidateBatch accepted inconsistent header %+v for %d bytes", h, len(data))
			}
		}

		total := 0
		serr := SplitBatches(data, func(b []byte, bh BatchHeader) error {
			if len(b) != bh.Size() || bh.Size() < BatchHeaderSize {
				t.Fatalf("SplitBatches handed %d bytes for header size %d", len(b), bh.Size())
			}
			total += len(b)
			checkTimestamps(t, &d, b)
			return nil
		})
		if serr == nil && total != len(data) {
			t.Fatalf("SplitBatches covered %d of %d bytes without error", total, len(data))
		}
		if verr == nil && (serr != nil || total != len(data)) {
			t.Fatalf("ValidateBatch accepted what SplitBatches rejects: %v", serr)
		}

		checkTimestamps(t, &d, data)
		if len(data) >= BatchHeaderSize {
			fixed := slices.Clone(data)
			fixCRC(fixed)
			checkTimestamps(t, &d, fixed)
		}
	})
}

// checkTimestamps runs RecordTimestamps on b twice and checks that the
// results are deterministic and consistent with the batch header.
func checkTimestamps(t *testing.T, d *Decompressor, b []byte) {
	t.Helper()
	offs, tss, err := d.RecordTimestamps(b)
	offs2, tss2, err2 := d.RecordTimestamps(b)
	if (err == nil) != (err2 == nil) || !slices.Equal(offs, offs2) || !slices.Equal(tss, tss2) {
		t.Fatalf("RecordTimestamps not deterministic: %v / %v", err, err2)
	}
	if err != nil {
		if !errors.Is(err, ErrCorruptBatch) && !errors.Is(err, ErrShortBatch) &&
			!errors.Is(err, ErrUnsupportedMagic) && !errors.Is(err, ErrDecompressedTooLarge) {
			t.Fatalf("RecordTimestamps returned an unclassified error: %v", err)
		}
		return
	}
	h, perr := ParseBatchHeader(b)
	if perr != nil || h.Size() != len(b) || VerifyCRC(b, &h) != nil {
		t.Fatalf("RecordTimestamps accepted a batch whose header or CRC fails: %v", perr)
	}
	if len(offs) != int(h.RecordCount) || len(tss) != len(offs) {
		t.Fatalf("%d offsets, %d timestamps for record count %d", len(offs), len(tss), h.RecordCount)
	}
	for i, o := range offs {
		if o < h.BaseOffset || o > h.LastOffset() || (i > 0 && o <= offs[i-1]) {
			t.Fatalf("offset %d at %d outside [%d, %d] or not increasing", o, i, h.BaseOffset, h.LastOffset())
		}
		if h.Attributes&AttrTimestampType != 0 && tss[i] != h.MaxTimestamp {
			t.Fatalf("LogAppendTime batch: timestamp %d, want MaxTimestamp %d", tss[i], h.MaxTimestamp)
		}
	}
	if h.RecordCount > 0 && h.LastOffsetDelta == h.RecordCount-1 && h.Compression() <= CompressionZstd {
		if _, err := ValidateBatch(b); err != nil {
			t.Fatalf("records decode but ValidateBatch fails: %v", err)
		}
	}
}
