# Sourced by the benchmarks that sign with PKCS#11: a throw-away SoftHSM2 token labelled "bench" in directory $1,
# with an ES256 key (object es256) and an RSA-2048 key (object rs256), user PIN 1234 in $1/pin. Exports
# SOFTHSM2_CONF, which the broker's pkcs11 engine (through SoftHSM2) reads. Needs softhsm2 and opensc (pkcs11-tool).
make_softhsm_token() {
  local work=$1
  local module=/usr/lib/softhsm/libsofthsm2.so
  mkdir -p "$work/tokens"
  echo "directories.tokendir = $work/tokens" > "$work/softhsm2.conf"
  export SOFTHSM2_CONF="$work/softhsm2.conf"
  softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 5678 >/dev/null
  pkcs11-tool --module "$module" --token-label bench --login --pin 1234 --keypairgen --key-type EC:prime256v1 --label es256 --id 01 >/dev/null
  pkcs11-tool --module "$module" --token-label bench --login --pin 1234 --keypairgen --key-type rsa:2048 --label rs256 --id 02 >/dev/null
  printf '1234\n' > "$work/pin"
}
