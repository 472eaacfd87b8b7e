package transport

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"sync/atomic"
)

// tlsHolder keeps a TLS listener's configuration, made from its files,
// and swaps in a new one when they are read again (certificate rotation
// without a restart): handshakes take whichever is current.
type tlsHolder struct {
	url   string
	files TLSFiles
	cur   atomic.Pointer[tls.Config]
}

func newTLSHolder(url string, files TLSFiles) (*tlsHolder, error) {
	h := &tlsHolder{url: url, files: files}
	cfg, err := loadTLS(files)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", url, err)
	}
	h.cur.Store(cfg)
	return h, nil
}

// reload reads the files again; on an error the current configuration
// stays.
func (h *tlsHolder) reload() error {
	cfg, err := loadTLS(h.files)
	if err != nil {
		return fmt.Errorf("listener %s: %w", h.url, err)
	}
	h.cur.Store(cfg)
	return nil
}

// config is what the listener wraps its connections with: every
// handshake asks for the current configuration.
func (h *tlsHolder) config() *tls.Config {
	cur := h.cur.Load()
	return &tls.Config{
		MinVersion: cur.MinVersion,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return h.cur.Load(), nil
		},
	}
}

// CheckTLS reads a listener's certificate files as the listener will,
// so that a bad file is reported before anything opens.
func CheckTLS(files TLSFiles) error {
	_, err := loadTLS(files)
	return err
}

func loadTLS(f TLSFiles) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("certificate %s / key %s: %w", f.Cert, f.Key, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if f.MinVersion == "1.3" {
		cfg.MinVersion = tls.VersionTLS13
	}
	if f.CA != "" && f.ClientAuth != "none" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("CA %s: %w", f.CA, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA %s: no PEM certificate in it", f.CA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		if f.ClientAuth == "optional" {
			cfg.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	return cfg, nil
}

// PeerCert is what a verified client certificate tells about its
// holder.
type PeerCert struct {
	CommonName  string
	SANs        []string // DNS names, e-mail addresses, IP addresses and URIs
	Fingerprint string   // SHA-256 of the certificate (DER), lower-case hex
}

// peerCert returns the verified client certificate of a handshake, or
// nil (none sent, or not verified).
func peerCert(st *tls.ConnectionState) *PeerCert {
	if st == nil || len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return nil
	}
	c := st.PeerCertificates[0]
	sum := sha256.Sum256(c.Raw)
	pc := &PeerCert{CommonName: c.Subject.CommonName, Fingerprint: hex.EncodeToString(sum[:])}
	pc.SANs = append(pc.SANs, c.DNSNames...)
	pc.SANs = append(pc.SANs, c.EmailAddresses...)
	for _, ip := range c.IPAddresses {
		pc.SANs = append(pc.SANs, ip.String())
	}
	for _, u := range c.URIs {
		pc.SANs = append(pc.SANs, u.String())
	}
	return pc
}

// tlsListener accepts TLS connections: each handshake runs on its own
// goroutine, bounded by the connect timeout, before the connection is
// served.
type tlsListener struct {
	ls *listenerState
	ln net.Listener
}

func (l *tlsListener) Addr() net.Addr { return l.ln.Addr() }
func (l *tlsListener) Close() error   { return l.ln.Close() }

func (l *tlsListener) Serve(establish func(net.Conn)) {
	cfg := l.ls.tls.config()
	acceptLoop(l.ls, l.ln, func(nc net.Conn) {
		go func() {
			tc := tls.Server(nc, cfg)
			t := l.ls.t
			tc.SetDeadline(connectDeadline(t))
			if err := tc.Handshake(); err != nil {
				l.ls.debug(nc, "TLS handshake failed", err)
				tc.Close()
				return
			}
			tc.SetDeadline(noDeadline)
			establish(tc)
		}()
	})
}
