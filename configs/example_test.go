package configs

import (
	"testing"

	"github.com/spf13/viper"
)

func TestSingleNodeExampleLoads(t *testing.T) {
	c, err := Load(viper.New(), "single-node.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c != Default() {
		t.Fatalf("example differs from the defaults:\n%+v\n%+v", c, Default())
	}
}
