package main

// TLS of ratelimitd's listeners. Certificates and client CAs are files that
// a cert-manager, a Vault agent or a Kubernetes Secret volume replaces in
// place; ratelimitd notices at the next handshake and never needs a restart.
// Every handshake stats the files (two or three stat calls per new
// connection, nothing per request: gRPC connections are long-lived) and
// loads them again when a modification time or size changed. A file that
// does not load (a half-written pair, a cert that does not match its key)
// keeps the last good value and is tried again at the next handshake, so a
// rotation never takes a listener down. Connections already open keep the
// certificate they were set up with until they close (-max-connection-age
// bounds that for gRPC).

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// fileReloader holds a value built from files, building it again when
// one of the files' modification time or size changed since the last
// build. It is safe for concurrent use.
type fileReloader[T any] struct {
	files []string
	build func() (T, error)
	state atomic.Pointer[stamped[T]]
}

type stamped[T any] struct {
	v     T
	stamp string
}

// newFileReloader builds the value once, failing when it cannot.
func newFileReloader[T any](build func() (T, error), files ...string) (*fileReloader[T], error) {
	r := &fileReloader[T]{files: files, build: build}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *fileReloader[T]) load() error {
	stamp, err := fileStamp(r.files...)
	if err != nil {
		return err
	}
	v, err := r.build()
	if err != nil {
		return err
	}
	r.state.Store(&stamped[T]{v: v, stamp: stamp})
	return nil
}

// get returns the current value, built again first when the files
// changed. When the new files do not build, it keeps the last good value
// (and tries again next time, since its stamp is still the old one).
func (r *fileReloader[T]) get() T {
	cur := r.state.Load()
	if stamp, err := fileStamp(r.files...); err == nil && stamp != cur.stamp {
		if r.load() == nil {
			cur = r.state.Load()
		}
	}
	return cur.v
}

// fileStamp summarizes the modification times and sizes of files.
func fileStamp(files ...string) (string, error) {
	stamp := ""
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return stamp, nil
}

// certReloader serves a PEM key pair from disk, reloaded when it changes.
type certReloader = fileReloader[*tls.Certificate]

func newCertReloader(certFile, keyFile string) (*certReloader, error) {
	return newFileReloader(func() (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		return &c, err
	}, certFile, keyFile)
}

// serverTLS returns the TLS config of a listener serving certs. With a
// clientCA file it requires and verifies client certificates against the
// CAs in that file, which is reloaded like the key pair: GetConfigForClient
// hands every handshake the config of the CA pool loaded last.
func serverTLS(certs *certReloader, clientCA string) (*tls.Config, error) {
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return certs.get(), nil }
	c := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: getCert}
	if clientCA == "" {
		return c, nil
	}
	withCA, err := newFileReloader(func() (*tls.Config, error) {
		pool, err := loadCertPool(clientCA)
		if err != nil {
			return nil, err
		}
		return &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: getCert,
			ClientCAs:      pool,
			ClientAuth:     tls.RequireAndVerifyClientCert,
		}, nil
	}, clientCA)
	if err != nil {
		return nil, err
	}
	// The outer config refuses clients too, should a handshake ever use it.
	c.ClientCAs = withCA.get().ClientCAs
	c.ClientAuth = tls.RequireAndVerifyClientCert
	c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return withCA.get(), nil }
	return c, nil
}

// loadCertPool reads a PEM file of CA certificates.
func loadCertPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate in %s", file)
	}
	return pool, nil
}

// listenerTLS returns the TLS configs of the gRPC and HTTP listeners (-tls-cert,
// -tls-key, -tls-client-ca, -http-tls); nil for a listener that stays plain.
// Both listeners serve the same key pair, loaded once and reloaded once.
// Client certificates are only required on gRPC: Envoy presents one, but
// kubelet probes and most Prometheus scrapes cannot.
func listenerTLS(s settings) (grpcTLS, httpTLS *tls.Config, err error) {
	if s.tlsCert == "" {
		return nil, nil, nil
	}
	certs, err := newCertReloader(s.tlsCert, s.tlsKey)
	if err != nil {
		return nil, nil, fmt.Errorf("-tls-cert, -tls-key: %w", err)
	}
	if grpcTLS, err = serverTLS(certs, s.tlsClientCA); err != nil {
		return nil, nil, fmt.Errorf("-tls-client-ca: %w", err)
	}
	if s.httpTLS {
		httpTLS, _ = serverTLS(certs, "") // no client CA: cannot fail
	}
	return grpcTLS, httpTLS, nil
}

// checkTLSSettings checks that the TLS flags go together.
func checkTLSSettings(s settings) error {
	if (s.tlsCert == "") != (s.tlsKey == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	if s.tlsClientCA != "" && s.tlsCert == "" {
		return errors.New("-tls-client-ca needs -tls-cert and -tls-key")
	}
	return nil
}
