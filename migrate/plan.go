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

	// AccessLog is the service's access log on the old host, read for the
	// traffic by hour and followed by drain.
	AccessLog string `json:"access_log,omitempty"`

	// The findings the plan was made from.
	Hosts   PlanHosts    `json:"hosts"`
	Move    *MoveSection `json:"move,omitempty"`
	DNS     *DNSSection  `json:"dns,omitempty"`
	Traffic *HourTraffic `json:"traffic,omitempty"`
	Config  *ConfigScan  `json:"config,omitempty"`
	Risks   []Risk       `json:"risks,omitempty"`
	// SuggestedCutover is the start of the first quietest hour after the
	// lowered TTLs have taken effect (zero without traffic data).
	SuggestedCutover time.Time `json:"suggested_cutover,omitzero"`
	// Notes are things the plan could not find out, each saying why.
	Notes []string `json:"notes,omitempty"`
}

// PlanVersion is the version of plan.json written by this build.
const PlanVersion = 1

// PlanHosts are the two hosts as their facts describe them.
type PlanHosts struct {
	Old HostSummary `json:"old"`
	New HostSummary `json:"new"`
}

// HostSummary is the part of a host's facts the plan uses.
type HostSummary struct {
	Spec     string `json:"spec"`
	Hostname string `json:"hostname,omitempty"`
	OS       string `json:"os,omitempty"`
	OSID     string `json:"os_id,omitempty"`
	Arch     string `json:"arch,omitempty"`
	Kernel   string `json:"kernel,omitempty"`
	CPUs     int    `json:"cpus,omitempty"`
	MemTotal uint64 `json:"mem_total,omitempty"`
	// DiskPath is the mount that receives the migrated files (the target)
	// or holds the service (the source), and DiskAvail its free bytes.
	DiskPath  string `json:"disk_path,omitempty"`
	DiskAvail uint64 `json:"disk_avail,omitempty"`
	// Listening is "proto addr:port process" for the service's sockets.
	Listening []string `json:"listening,omitempty"`
	Error     string   `json:"error,omitempty"`
}

// MoveSection is what will move, from the capture dry-run on the old host
// and what the new host already holds.
type MoveSection struct {
	// Measured is false when the dry-run could not run; Note says why.
	Measured bool       `json:"measured"`
	Note     string     `json:"note,omitempty"`
	Service  string     `json:"service,omitempty"`
	Files    int        `json:"files"`
	Entries  int        `json:"entries"`
	Bytes    int64      `json:"bytes"`
	Parts    []MovePart `json:"parts,omitempty"`
	Packages []string   `json:"packages,omitempty"`
	Ports    []string   `json:"ports,omitempty"`
	Start    []string   `json:"start,omitempty"`
	// PresentBytes are file bytes the target already holds with the same
	// content at the same path; BytesToSend is Bytes minus those.
	PresentBytes int64 `json:"present_bytes"`
	PresentFiles int   `json:"present_files"`
	TargetKnown  bool  `json:"target_known"`
	BytesToSend  int64 `json:"bytes_to_send"`
	// ChangingBytes are the bytes of files modified in the last hour: a
	// guess at what the final delta during cutover will carry.
	ChangingBytes int64 `json:"changing_bytes"`
	// Bandwidth (bytes/s) the estimates assume.
	Bandwidth   int64         `json:"bandwidth"`
	EstTransfer time.Duration `json:"est_transfer_ns"`
	EstCutover  time.Duration `json:"est_cutover_ns"`
	Took        time.Duration `json:"took_ns"`
}

// MovePart is one kind of captured file: packages, config, data,
// libraries, other.
type MovePart struct {
	Kind  string `json:"kind"`
	Files int    `json:"files"`
	Bytes int64  `json:"bytes"`
}

// DNSSection is the DNS as the authoritative servers serve it, and the
// timing it imposes.
type DNSSection struct {
	Zone       string      `json:"zone,omitempty"`
	Servers    []DNSServer `json:"servers,omitempty"`
	Consistent bool        `json:"consistent"`
	Records    []DNSRecord `json:"records,omitempty"`
	Problems   []string    `json:"problems,omitempty"`
	// MaxTTL is the longest TTL of the records that will change.
	MaxTTL time.Duration `json:"max_ttl_ns"`
	// LowTTL is the TTL to lower the records to before the cutover.
	LowTTL time.Duration `json:"low_ttl_ns"`
	// LowerBy is when the TTL must be lowered (now), CutoverAfter the
	// first moment a cutover then only leaves LowTTL of stale caches, and
	// EarliestComplete when caches are all fresh at the soonest: a switch
	// made right now is complete after MaxTTL.
	LowerBy          time.Time `json:"lower_by"`
	CutoverAfter     time.Time `json:"cutover_after"`
	EarliestComplete time.Time `json:"earliest_complete"`
	Error            string    `json:"error,omitempty"`
	// MXProbes are the SMTP RCPT TO tests of each MX (mail services only).
	MXProbes []MXProbe `json:"mx_probes,omitempty"`
}

// DNSServer is one authoritative server's state.
type DNSServer struct {
	Server string `json:"server"`
	NSName string `json:"ns_name,omitempty"`
	Serial uint32 `json:"serial,omitempty"`
	Error  string `json:"error,omitempty"`
}

// DNSRecord is one record served for a migrated name.
type DNSRecord struct {
	Name  string        `json:"name"`
	Type  string        `json:"type"`
	TTL   time.Duration `json:"ttl_ns"`
	Value string        `json:"value"`
}

// Risk is one thing that can go wrong, with what to do about it.
type Risk struct {
	ID       string `json:"id"`
	Severity string `json:"severity"` // "high", "medium", "low"
	Title    string `json:"title"`
	Detail   string `json:"detail,omitempty"`
	Fix      string `json:"fix"`
}

// Risk IDs.
const (
	RiskProxyAddress = "proxy-address"
	RiskIPRules      = "ip-access-rules"
	RiskSingleMX     = "no-secondary-mx"
	RiskSingleNS     = "no-secondary-ns"
	RiskLongTTL      = "long-ttl"
	RiskDisk         = "target-disk"
	RiskOS           = "different-os"
	RiskArch         = "different-arch"
	RiskDNSMismatch  = "dns-inconsistent"
	RiskNoDNS        = "no-dns"
	RiskBackupMX     = "backup-mx-refuses"
	RiskPortBusy     = "target-port-busy"
)
