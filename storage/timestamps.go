package storage

import "github.com/tuskdb/tusk/kafkaproto"

// recordTimestamps returns the absolute offset and timestamp of every record
// of one batch (decompressing it). Only ListOffsets look-ups call it.
func recordTimestamps(batch []byte) (offsets, timestamps []int64, err error) {
	return kafkaproto.RecordTimestamps(batch)
}
