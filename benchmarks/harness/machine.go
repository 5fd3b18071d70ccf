package main

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
)

// Machine describes where the figures were measured.
type Machine struct {
	CPU        string  `json:"cpu"`
	Cores      int     `json:"cores"`
	CPUFlags   string  `json:"cpu_flags"` // the ones that matter for hashing and compression
	MemoryGB   float64 `json:"memory_gb"`
	Kernel     string  `json:"kernel"`
	OS         string  `json:"os"`
	Go         string  `json:"go"`
	Disk       string  `json:"disk"` // device and filesystem of the work dir
	DiskFreeGB float64 `json:"disk_free_gb"`
	// Versions of every tool measured, as run.sh found them.
	Versions map[string]string `json:"versions"`
}

func firstMatch(file, prefix string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			return strings.TrimSpace(strings.TrimPrefix(sc.Text(), prefix))
		}
	}
	return ""
}

func describeMachine(workDir string) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	m.CPU = strings.TrimLeft(firstMatch("/proc/cpuinfo", "model name"), ": \t")
	var flags []string
	for _, f := range strings.Fields(firstMatch("/proc/cpuinfo", "flags")) {
		switch f {
		case "sha_ni", "avx2", "avx512f", "aes", "pclmulqdq", "bmi2":
			flags = append(flags, f)
		}
	}
	m.CPUFlags = strings.Join(flags, " ")
	if kb := strings.Fields(firstMatch("/proc/meminfo", "MemTotal:")); len(kb) > 0 {
		var n float64
		for _, c := range kb[0] {
			n = n*10 + float64(c-'0')
		}
		m.MemoryGB = n / 1024 / 1024
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.OS = strings.Trim(firstMatch("/etc/os-release", "PRETTY_NAME="), `"`)
	m.Disk = mountOf(workDir)
	var st syscall.Statfs_t
	if syscall.Statfs(workDir, &st) == nil {
		m.DiskFreeGB = float64(st.Bavail) * float64(st.Bsize) / 1e9
	}
	return m
}

// mountOf names the device and filesystem type holding dir (longest mount point prefix).
func mountOf(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return ""
	}
	best, desc := "", ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		mp := f[1]
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best, desc = mp, f[0]+" ("+f[2]+") on "+mp
		}
	}
	return desc
}
