package main

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

func TestExitCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{usagef("bad"), 2},
		{fmt.Errorf("wrapped: %w", usagef("bad")), 2},
		{errors.New(`unknown command "x" for "tusk"`), 2},
		{errors.New("list topics: connection refused"), 1},
		{itemErrors([]string{"b: x", "a: y"}), 1},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
	if err := itemErrors([]string{"b: x", "a: y"}); err.Error() != "2 failed: a: y; b: x" {
		t.Errorf("itemErrors: %v", err)
	}
	if itemErrors(nil) != nil {
		t.Error("itemErrors(nil) != nil")
	}
}

func TestParseTopicSpecAndKV(t *testing.T) {
	for _, c := range []struct {
		in    string
		topic string
		ps    []int32
		usage bool
	}{
		{in: "t", topic: "t"},
		{in: "t:0,2", topic: "t", ps: []int32{0, 2}},
		{in: "t:x", usage: true},
		{in: "t:-1", usage: true},
		{in: ":1", usage: true},
	} {
		topic, ps, err := parseTopicSpec(c.in)
		if (err != nil) != c.usage || (err != nil && exitCode(err) != 2) || topic != c.topic || !reflect.DeepEqual(ps, c.ps) {
			t.Errorf("parseTopicSpec(%q) = %q %v %v", c.in, topic, ps, err)
		}
	}
	kv, err := parseKV([]string{"a=1", "b=", "c=x=y"})
	if err != nil || !reflect.DeepEqual(kv, map[string]string{"a": "1", "b": "", "c": "x=y"}) {
		t.Errorf("parseKV: %v %v", kv, err)
	}
	if _, err := parseKV([]string{"novalue"}); exitCode(err) != 2 {
		t.Errorf("parseKV(novalue): %v", err)
	}
}
