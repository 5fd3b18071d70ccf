package registryclient

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tlsServer serves HTTPS on 127.0.0.1 with a certificate for names (DNS names or IP
// addresses) signed by a fresh CA, whose PEM file it returns with the server's host:port.
func tlsServer(t *testing.T, names ...string) (caFile, addr string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			leaf.IPAddresses = append(leaf.IPAddresses, ip)
		} else {
			leaf.DNSNames = append(leaf.DNSNames, n)
		}
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	s.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: key}}}
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	s.StartTLS()
	t.Cleanup(s.Close)
	return caFile, s.Listener.Addr().String()
}

// TestTLSVerification: certificates are verified, including that they are for the host dialed
// (by IP address too), except for hosts listed insecure, by host:port or host.
func TestTLSVerification(t *testing.T) {
	goodCA, good := tlsServer(t, "127.0.0.1", "localhost")
	otherCA, other := tlsServer(t, "registry.other.example") // trusted CA, wrong name
	_, goodPort, _ := net.SplitHostPort(good)
	for _, tc := range []struct {
		name string
		c    Config
		addr string
		want string // "" for success, else part of the error
	}{
		{"unknown CA", Config{}, good, "certificate signed by unknown authority"},
		{"CA given", Config{CAFiles: []string{goodCA}}, good, ""},
		{"CA given, by name", Config{CAFiles: []string{goodCA}}, "localhost:" + goodPort, ""},
		{"insecure host:port", Config{Insecure: []string{good}}, good, ""},
		{"insecure host", Config{Insecure: []string{"127.0.0.1"}}, good, ""},
		{"insecure by name", Config{Insecure: []string{"localhost:" + goodPort}}, "localhost:" + goodPort, ""},
		{"another host insecure", Config{Insecure: []string{"127.0.0.1:1"}}, good, "certificate signed by unknown authority"},
		{"wrong name", Config{CAFiles: []string{otherCA}}, other, "127.0.0.1"},
		{"wrong name, another host insecure", Config{CAFiles: []string{otherCA}, Insecure: []string{"registry.other.example"}}, other, "127.0.0.1"},
		{"wrong name, insecure", Config{CAFiles: []string{otherCA}, Insecure: []string{other}}, other, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, err := tc.c.Transport()
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest(http.MethodGet, "https://"+tc.addr+"/v2/", nil)
			resp, err := rt.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("GET %s: %v", tc.addr, err)
			case tc.want != "" && err == nil:
				t.Errorf("GET %s succeeded, want a TLS error about %q", tc.addr, tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("GET %s: %v, want an error about %q", tc.addr, err, tc.want)
			}
		})
	}
}
