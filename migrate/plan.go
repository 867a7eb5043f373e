package migrate

import "time"

// Plan is what `migrate plan` decided, saved as plan.json in the migration
// directory and read by every later step.
type Plan struct {
	Version int       `json:"version"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	From    string    `json:"from"` // host spec of the old host
	To      string    `json:"to"`   // host spec of the new host
	Service string    `json:"service"`
	Port    int       `json:"port,omitempty"`

	// DNS
	Domains    []string `json:"domains,omitempty"`
	DNSServers []string `json:"dns_servers,omitempty"`
	// TSIGKeyFile is the path of the key file; the secret itself is never
	// stored in the plan.
	TSIGKeyFile string `json:"tsig_key_file,omitempty"`

	// Addresses the service is reached at, old and new.
	OldAddr string `json:"old_addr,omitempty"`
	NewAddr string `json:"new_addr,omitempty"`
}

// PlanVersion is the version of plan.json written by this build.
const PlanVersion = 1
