package configs

import (
	"fmt"
	"runtime"
	"strings"
)

// SASL mechanisms Tusk implements (sasl.mechanisms).
var saslMechanisms = []string{"SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"}

// MechanismList returns the enabled SASL mechanisms in the configured
// order, upper case, each once. An empty list or an unknown mechanism is
// an error.
func (c SASLConfig) MechanismList() ([]string, error) {
	var out []string
	for _, m := range strings.Split(c.Mechanisms, ",") {
		m = strings.ToUpper(strings.TrimSpace(m))
		if m == "" {
			continue
		}
		known := false
		for _, k := range saslMechanisms {
			known = known || k == m
		}
		if !known {
			return nil, fmt.Errorf("sasl.mechanisms: unknown mechanism %q (supported: %s)", m, strings.Join(saslMechanisms, ", "))
		}
		dup := false
		for _, o := range out {
			dup = dup || o == m
		}
		if !dup {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("sasl.mechanisms is empty (supported: %s)", strings.Join(saslMechanisms, ", "))
	}
	return out, nil
}

// HashConcurrency is how many PBKDF2 password hashes may run at once
// (sasl.max-concurrent-hashes; 0: GOMAXPROCS, as each keeps a core busy).
func (c SASLConfig) HashConcurrency() int {
	if c.MaxConcurrentHashes > 0 {
		return c.MaxConcurrentHashes
	}
	return runtime.GOMAXPROCS(0)
}

// validateSASL checks the SASL settings.
func (c Config) validateSASL() []error {
	var errs []error
	if _, err := c.SASL.MechanismList(); err != nil {
		errs = append(errs, err)
	}
	if c.SASL.FailedAuthDelay < 0 {
		errs = append(errs, fmt.Errorf("sasl.failed-auth-delay %v must not be negative", c.SASL.FailedAuthDelay))
	}
	if c.SASL.MaxConcurrentHashes < 0 {
		errs = append(errs, fmt.Errorf("sasl.max-concurrent-hashes %d must not be negative", c.SASL.MaxConcurrentHashes))
	}
	if c.SASL.MaxReauth < 0 {
		errs = append(errs, fmt.Errorf("sasl.max-reauth %v must not be negative", c.SASL.MaxReauth))
	}
	// super-users is "Type:name;Type:name" (package auth parses it at
	// start; a bad value is refused here, before anything starts).
	for _, p := range strings.Split(c.SuperUsers, ";") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if t, n, ok := strings.Cut(p, ":"); !ok || t == "" || n == "" {
			errs = append(errs, fmt.Errorf("super-users: %q is not Type:name (e.g. User:admin)", p))
		}
	}
	return errs
}
