package metadata

import (
	"errors"
	"fmt"
	"maps"
)

// Group configs (Kafka's GROUP config resources, KIP-848/KIP-932): per
// group overrides of group settings, kept in the metadata so that every
// node (the group's coordinator, the share-partition leaders) reads the
// same ones. The broker decides which names and values are valid.

// SetGroupConfigs replaces one group's overrides (none: they are
// dropped), if they are still Expected (compare-and-set, as
// SetTopicConfigs).
type SetGroupConfigs struct {
	Group    string            `json:"group"`
	Expected map[string]string `json:"expected"`
	Configs  map[string]string `json:"configs"`
}

func (SetGroupConfigs) kind() string { return "set_group_configs" }

func (c SetGroupConfigs) validate() error {
	if c.Group == "" {
		return errors.New("empty group id")
	}
	for k := range c.Configs {
		if k == "" {
			return errors.New("empty config name")
		}
	}
	return nil
}

func (c SetGroupConfigs) apply(st *state) error {
	if !maps.Equal(st.GroupConfigs[c.Group], c.Expected) {
		return fmt.Errorf("%w: configs of group %s changed concurrently", ErrPreconditionFailed, c.Group)
	}
	if len(c.Configs) == 0 {
		delete(st.GroupConfigs, c.Group)
		return nil
	}
	if st.GroupConfigs == nil {
		st.GroupConfigs = map[string]map[string]string{}
	}
	st.GroupConfigs[c.Group] = maps.Clone(c.Configs)
	return nil
}

// GroupConfigs returns a copy of a group's config overrides (nil: none).
func (f *FSM) GroupConfigs(group string) map[string]string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return maps.Clone(f.st.GroupConfigs[group])
}
