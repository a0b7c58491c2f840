/*
 * crypto.h - what the keyring (crypto.c) offers the wire codec (wire.c).
 * Private to libheart; never installed.
 *
 * The codec owns the byte layout; crypto.c owns keys and libcrypto.  The
 * codec hands over a packet buffer whose header bytes are already written
 * (seal) or already checked against *hdr (open); crypto.c never parses.
 */
#ifndef HEART_CRYPTO_H
#define HEART_CRYPTO_H

#include "internal.h"

#include <stddef.h>
#include <stdint.h>

/* The send key's id and algorithm; -ENOENT when no send key is set. */
HB_HIDDEN int hb_crypto_send_key(const hb_keyring *kr, uint8_t *key_id,
                                 uint8_t *alg);

/*
 * Seal with the send key.  pkt[0 .. HB_WIRE_HEADER_LEN) holds the encoded
 * header of hdr (whose alg/key_id came from hb_crypto_send_key).  Writes the
 * payload (HMAC: as is; GCM: encrypted) at pkt + HB_WIRE_HEADER_LEN and the
 * tag right after it.  payload may equal pkt + HB_WIRE_HEADER_LEN (in place);
 * otherwise the two must not overlap.  0, -ENOENT or -EIO.
 */
HB_HIDDEN int hb_crypto_seal(hb_keyring *kr, const hb_header *hdr, uint8_t *pkt,
                             const uint8_t *payload, size_t payload_len);

/*
 * Authenticate pkt, which is exactly HB_WIRE_HEADER_LEN + hdr->payload_len +
 * HB_WIRE_TAG_LEN bytes and whose header bytes encode *hdr (the codec has
 * checked both), and copy/decrypt the payload to payload_out (room for
 * hdr->payload_len bytes; untouched unless the tag is good).
 * 0, -HB_REJ_UNKNOWN_KEY or -HB_REJ_BAD_TAG (also when libcrypto fails: a
 * packet that could not be authenticated is not accepted).
 */
HB_HIDDEN int hb_crypto_open(hb_keyring *kr, const hb_header *hdr,
                             const uint8_t *pkt, uint8_t *payload_out);

#endif /* HEART_CRYPTO_H */
