package kafkaproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// encodeRequest builds a complete request frame the way a client does.
func encodeRequest(req kmsg.Request, corr int32, clientID string) []byte {
	var b []byte
	b = append(b, 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(req.Key()))
	b = binary.BigEndian.AppendUint16(b, uint16(req.GetVersion()))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, uint16(len(clientID)))
	b = append(b, clientID...)
	if req.IsFlexible() {
		b = append(b, 0)
	}
	b = req.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func TestReadFrameAndParseRequest(t *testing.T) {
	for _, v := range []int16{0, 4, 9, 12} {
		req := kmsg.NewPtrMetadataRequest()
		req.SetVersion(v)
		if v >= 1 {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr("orders")
			req.Topics = append(req.Topics, rt)
		}
		wire := encodeRequest(req, 77, "client-x")
		frame, err := ReadFrame(bytes.NewReader(wire), 1<<20, nil)
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		h, got, body, err := ParseRequest(frame)
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		if h.APIKey != 3 || h.APIVersion != v || h.CorrelationID != 77 || h.ClientID != "client-x" || h.Flexible != (v >= 9) {
			t.Fatalf("v%d: header %+v", v, h)
		}
		if err := got.ReadFrom(body); err != nil {
			t.Fatalf("v%d: body: %v", v, err)
		}
		m := got.(*kmsg.MetadataRequest)
		if v >= 1 && (len(m.Topics) != 1 || *m.Topics[0].Topic != "orders") {
			t.Fatalf("v%d: topics %+v", v, m.Topics)
		}
	}
}

func TestReadFrameLimits(t *testing.T) {
	big := binary.BigEndian.AppendUint32(nil, 2<<20)
	if _, err := ReadFrame(bytes.NewReader(big), 1<<20, nil); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized frame: %v", err)
	}
	neg := binary.BigEndian.AppendUint32(nil, 0xffffffff)
	if _, err := ReadFrame(bytes.NewReader(neg), 1<<20, nil); !errors.Is(err, ErrMalformedFrame) {
		t.Fatalf("negative frame: %v", err)
	}
	short := append(binary.BigEndian.AppendUint32(nil, 100), make([]byte, 10)...)
	if _, err := ReadFrame(bytes.NewReader(short), 1<<20, nil); !errors.Is(err, ErrMalformedFrame) {
		t.Fatalf("truncated frame: %v", err)
	}
	unknown := []byte{0x27, 0x0f, 0, 0, 0, 0, 0, 1, 0xff, 0xff}
	if _, _, _, err := ParseRequest(unknown); !errors.Is(err, ErrUnknownAPIKey) {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestAppendResponseHeaders(t *testing.T) {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(3)
	out := AppendResponse(nil, 5, ResponseHeaderFlexible(18, true), resp)
	if int(binary.BigEndian.Uint32(out)) != len(out)-4 || binary.BigEndian.Uint32(out[4:]) != 5 {
		t.Fatalf("bad frame %x", out)
	}
	// ApiVersions never has a tagged header: the body starts right after
	// the correlation id with the int16 error code.
	back := kmsg.NewPtrApiVersionsResponse()
	back.SetVersion(3)
	if err := back.ReadFrom(out[8:]); err != nil {
		t.Fatal(err)
	}
	md := kmsg.NewPtrMetadataResponse()
	md.SetVersion(12)
	out = AppendResponse(nil, 6, ResponseHeaderFlexible(3, true), md)
	if out[8] != 0 {
		t.Fatalf("flexible header should carry an empty tag section")
	}
}

func FuzzFrame(f *testing.F) {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(9)
	f.Add(encodeRequest(req, 1, "c"))
	mreq := kmsg.NewPtrMetadataRequest()
	mreq.SetVersion(12)
	f.Add(encodeRequest(mreq, 2, ""))
	f.Add([]byte{0, 0, 0, 4, 1, 2, 3, 4})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		frame, err := ReadFrame(bytes.NewReader(b), 1<<16, nil)
		if err != nil {
			return
		}
		_, r, body, err := ParseRequest(frame)
		if err != nil {
			return
		}
		if r.GetVersion() < 0 || r.GetVersion() > r.MaxVersion() {
			return // the broker refuses such versions before decoding
		}
		_ = r.ReadFrom(body) // must not panic
	})
}
