package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TLSServer is a standalone redis-server that listens only for TLS (no
// plain TCP port) and requires a client certificate signed by its CA
// (tls-auth-clients yes). The CA, the server certificate (for 127.0.0.1 and
// localhost) and the client certificate are made for each server at start,
// in t.TempDir().
type TLSServer struct {
	// Addr is the server's TLS host:port on 127.0.0.1.
	Addr string
	// CAFile, CertFile and KeyFile are the PEM files of the CA and of the
	// client certificate and key, for code that reads files (ratelimitd's
	// -redis-tls-* flags).
	CAFile, CertFile, KeyFile string
	// CAs holds the CA; ClientCert is the client certificate with its key.
	CAs        *x509.CertPool
	ClientCert tls.Certificate

	mu sync.Mutex
	p  *proc
}

// TLSStandalone starts a TLS-only redis-server and stops it when the test
// ends. When redis-server was built without TLS it skips the test, or fails
// it when the environment variable CI is set.
func TLSStandalone(t T) *TLSServer {
	t.Helper()
	Require(t)
	dir := t.TempDir()
	s := &TLSServer{
		CAFile:   filepath.Join(dir, "ca.crt"),
		CertFile: filepath.Join(dir, "client.crt"),
		KeyFile:  filepath.Join(dir, "client.key"),
	}
	serverCert, serverKey := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := writeCerts(s.CAFile, serverCert, serverKey, s.CertFile, s.KeyFile); err != nil {
		t.Fatalf("redistest: certificates: %v", err)
	}
	ca, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	s.CAs = x509.NewCertPool()
	s.CAs.AppendCertsFromPEM(ca)
	if s.ClientCert, err = tls.LoadX509KeyPair(s.CertFile, s.KeyFile); err != nil {
		t.Fatal(err)
	}

	p, addr, err := tryStartServer(t, "tls", s.Config(), func(port int, dir string) []string {
		return serverArgs(0, dir,
			"--tls-port", strconv.Itoa(port),
			"--tls-cert-file", serverCert,
			"--tls-key-file", serverKey,
			"--tls-ca-cert-file", s.CAFile,
			"--tls-auth-clients", "yes",
		)
	})
	if err != nil {
		if msg := err.Error(); strings.Contains(msg, "Bad directive") || strings.Contains(msg, "not supported") ||
			strings.Contains(msg, "TLS support") {
			if os.Getenv("CI") != "" {
				t.Fatalf("redistest: redis-server has no TLS support and CI is set: %v", err)
			}
			t.Skipf("redistest: redis-server seems built without TLS support (BUILD_TLS=yes): %v", err)
		}
		t.Fatalf("redistest: start TLS redis-server: %v", err)
	}
	s.p, s.Addr = p, addr
	t.Cleanup(s.Kill)
	return s
}

// Config returns a client configuration that trusts the server's CA and
// presents the client certificate.
func (s *TLSServer) Config() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: s.CAs, Certificates: []tls.Certificate{s.ClientCert}}
}

// Kill stops the server with SIGKILL and waits for it to exit.
func (s *TLSServer) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.p.kill()
}

// writeCerts makes a CA, a server certificate for 127.0.0.1 and localhost
// and a client certificate, both signed by the CA, valid for a day, and
// writes them and their keys as PEM files.
func writeCerts(caFile, serverCert, serverKey, clientCert, clientKey string) error {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redistest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writePEM(caFile, "CERTIFICATE", caDER); err != nil {
		return err
	}
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage, certFile, keyFile string, ips []net.IP, dns []string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
			DNSNames:     dns,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
			return err
		}
		return writePEM(keyFile, "PRIVATE KEY", kder)
	}
	if err := leaf(2, "localhost", x509.ExtKeyUsageServerAuth, serverCert, serverKey, []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"}); err != nil {
		return err
	}
	return leaf(3, "redistest client", x509.ExtKeyUsageClientAuth, clientCert, clientKey, nil, nil)
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
