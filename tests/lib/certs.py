"""certs.py: test certificates made with the openssl command: a CA, good, expired and misnamed server certificates, and another CA."""

import base64
import os
import subprocess

OPENSSL = os.environ.get("OPENSSL", "openssl")

_CA_CONF = """[ ca ]
default_ca = veil
[ veil ]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
default_md = sha256
policy = anything
copy_extensions = copy
unique_subject = no
[ anything ]
commonName = supplied
[ server ]
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
"""


def _run(*args, cwd=None):
    subprocess.run([OPENSSL] + list(args), check=True, capture_output=True, cwd=cwd,
                   timeout=60)


class CA:
    """A certificate authority in dir/NAME: ca.crt, ca.key; issue() makes
    server certificates signed by it, valid or not."""

    def __init__(self, tmpdir, name="ca"):
        self.dir = os.path.abspath(os.path.join(tmpdir, name))
        os.makedirs(self.dir, exist_ok=True)
        self.crt = os.path.join(self.dir, "ca.crt")
        self.key = os.path.join(self.dir, "ca.key")
        _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-days", "3", "-subj", "/CN=veil test CA %s" % name,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", self.key, "-out", self.crt)
        with open(os.path.join(self.dir, "index.txt"), "w"):
            pass
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")
        self.conf = os.path.join(self.dir, "ca.cnf")
        with open(self.conf, "w") as f:
            f.write(_CA_CONF.format(dir=self.dir))

    def issue(self, name, sans=("DNS:localhost", "IP:127.0.0.1"), expired=False):
        """(certificate, key) for a server named by sans; expired: valid
        for a day two years ago."""
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        crt = os.path.join(self.dir, name + ".crt")
        _run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-subj", "/CN=%s" % sans[0].split(":", 1)[1],
             "-addext", "subjectAltName=" + ",".join(sans), "-keyout", key, "-out", csr)
        dates = (["-startdate", "20000101000000Z", "-enddate", "20000102000000Z"]
                 if expired else ["-days", "2"])
        _run("ca", "-batch", "-config", self.conf, "-extensions", "server", "-notext",
             "-cert", self.crt, "-keyfile", self.key, "-in", csr, "-out", crt, *dates)
        return crt, key


def chain_file(crt, ca, path):
    """The server certificate followed by its CA's, as a server sends it."""
    with open(path, "w") as out:
        for p in (crt, ca.crt):
            with open(p) as f:
                out.write(f.read())
    return path


def spki_sha256(crt):
    """The base64 SHA-256 of crt's SubjectPublicKeyInfo (a pin_sha256)."""
    pub = subprocess.run([OPENSSL, "x509", "-in", crt, "-pubkey", "-noout"],
                         check=True, capture_output=True, timeout=30).stdout
    der = subprocess.run([OPENSSL, "pkey", "-pubin", "-outform", "der"], input=pub,
                         check=True, capture_output=True, timeout=30).stdout
    dgst = subprocess.run([OPENSSL, "dgst", "-sha256", "-binary"], input=der,
                          check=True, capture_output=True, timeout=30).stdout
    return base64.b64encode(dgst).decode()
