package broker

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"

	"github.com/tuskdb/tusk/auth"
	"github.com/tuskdb/tusk/storage"
)

// DescribeLogDirs (KIP-113) lists the one log directory this node keeps
// its partitions in (<data-dir>/logs) with the size of every partition log
// open on this node, leader's or replica's, as Kafka lists every replica a
// broker holds. OffsetLag is Kafka's lag of a future (moving) replica
// behind the current one: always 0 here, as Kafka answers for current
// replicas. v4 adds the volume's total and usable bytes (statfs).
func apiDescribeLogDirs() api {
	return api{key: kmsg.DescribeLogDirs, min: 0, max: 4, handle: func(b *Broker, rc *request) (kmsg.Response, func() kmsg.Response) {
		if code := rc.clusterDenied(auth.OpDescribe); code != 0 { // DESCRIBE on the cluster
			resp := kmsg.NewPtrDescribeLogDirsResponse()
			resp.ErrorCode = code
			return resp, nil
		}
		return b.handleDescribeLogDirs(rc.req.(*kmsg.DescribeLogDirsRequest)), nil
	}}
}

// logsDir is the directory the storage engine keeps partition logs in
// (cmd/tusk/serve.go opens the engine there), made absolute as Kafka
// reports log dirs.
func (b *Broker) logsDir() string {
	dir := filepath.Join(b.cfg.DataDir, "logs")
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return dir
}

func (b *Broker) handleDescribeLogDirs(req *kmsg.DescribeLogDirsRequest) kmsg.Response {
	resp := kmsg.NewPtrDescribeLogDirsResponse()
	d := kmsg.NewDescribeLogDirsResponseDir()
	d.Dir = b.logsDir()
	if req.Version >= 4 {
		total, usable, err := volumeBytes(d.Dir)
		if err != nil {
			b.log.Error().Err(err).Msg("describe log dirs")
			d.ErrorCode = kerr.KafkaStorageError.Code
			resp.Dirs = append(resp.Dirs, d)
			return resp
		}
		d.TotalBytes, d.UsableBytes = total, usable
	}
	// A null topic list asks for every partition; otherwise only the
	// named ones this node holds (Kafka leaves out the others).
	var want map[string][]int32
	if req.Topics != nil {
		want = map[string][]int32{}
		for _, t := range req.Topics {
			want[t.Topic] = append(want[t.Topic], t.Partitions...)
		}
	}
	for _, t := range b.store.FSM().Topics() {
		parts, asked := want[t.Name]
		if want != nil && !asked {
			continue
		}
		dt := kmsg.NewDescribeLogDirsResponseDirTopic()
		dt.Topic = t.Name
		for p := int32(0); p < t.Partitions; p++ {
			if want != nil && !slices.Contains(parts, p) {
				continue
			}
			l, ok := b.engine.Log(storage.TopicPartition{Topic: t.Name, Partition: p})
			if !ok {
				continue
			}
			dp := kmsg.NewDescribeLogDirsResponseDirTopicPartition()
			dp.Partition = p
			dp.Size = l.Size()
			dt.Partitions = append(dt.Partitions, dp)
		}
		if len(dt.Partitions) > 0 {
			d.Topics = append(d.Topics, dt)
		}
	}
	resp.Dirs = append(resp.Dirs, d)
	return resp
}

// volumeBytes returns the total size of the volume holding dir and the
// bytes an unprivileged writer may still use (Kafka's getUsableSpace).
func volumeBytes(dir string) (total, usable int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("broker: statfs %s: %w", dir, err)
	}
	return int64(st.Blocks) * int64(st.Bsize), int64(st.Bavail) * int64(st.Bsize), nil
}
