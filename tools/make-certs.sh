#!/usr/bin/env bash
# Makes the certificates for TLS between gateways and workers with openssl, into OUTDIR:
#   ca.crt ca.key            a private CA that signs the two below
#   worker.crt worker.key    the workers' server certificate (r1-worker --tls-cert/--tls-key);
#                            names: r1-worker, localhost, 127.0.0.1 and any NAME given
#   gateway.crt gateway.key  the gateways' client certificate (r1-gateway --worker-tls-cert/
#                            --worker-tls-key), accepted by workers run with --tls-client-ca ca.crt
# Keys are EC P-256, readable by the owner only; DAYS (default 365) sets the validity.
#   tools/make-certs.sh OUTDIR [NAME...]
set -euo pipefail
out="${1:?usage: make-certs.sh OUTDIR [NAME...]}"
shift
days="${DAYS:-365}"
command -v openssl >/dev/null || { echo "make-certs: openssl is not installed" >&2; exit 1; }
mkdir -p "$out"
umask 077
cd "$out"

san="DNS:r1-worker,DNS:localhost,IP:127.0.0.1"
for name in "$@"; do
  if [[ "$name" =~ ^[0-9.]+$ || "$name" == *:* ]]; then san+=",IP:$name"; else san+=",DNS:$name"; fi
done

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$days" -subj "/CN=r1serve worker CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.crt

# sign NAME CN EXTENSIONS: NAME.key, NAME.csr -> NAME.crt signed by the CA.
sign() {
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
    -days "$days" -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
sign worker r1-worker "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san"
sign gateway r1-gateway "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
rm -f ca.srl
chmod 644 ca.crt worker.crt gateway.crt
echo "make-certs: wrote ca, worker ($san) and gateway certificates to $(pwd)"
