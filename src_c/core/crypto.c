/*
 * crypto.c - the keyring: HMAC-SHA256 and AES-256-GCM through OpenSSL 3's
 * libcrypto (docs/protocol.md, "Authentication").  No primitive is written
 * here by hand; this file only decides which bytes go where.
 *
 * Hot path costs (one packet):
 *   - HMAC: each key keeps one EVP_MAC_CTX initialised with the key; a
 *     message re-initialises it with a NULL key, which reuses the inner and
 *     outer key schedules (no per-packet HMAC key setup, no fetch).
 *   - GCM: the key that encrypts is a per-sender subkey,
 *       HKDF-SHA256(ikm = key, salt = "heart-v1-gcm",
 *                   info = cluster_id(4) || node_id(4) || generation(8)),
 *     so the 96-bit nonce 0(4) || seq(8) never repeats under one subkey
 *     without any coordination between senders (a restart bumps the
 *     generation, hence a fresh subkey).  Deriving costs an HKDF plus an AES
 *     key schedule, so ready EVP_CIPHER_CTXs are cached: one per key for
 *     our own sending identity, and a small set-associative cache for the
 *     senders we hear.  A receiver inserts into that cache only after a tag
 *     verified, so a flood of forged packets with made-up generations costs
 *     the attacker one HKDF + one trial decryption each on our side but can
 *     never evict the entries of real peers.
 *
 * Key material is wiped with OPENSSL_cleanse (and libcrypto's own clear_free
 * for the contexts) on remove and free.
 */
#include "crypto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#define HB_GCM_NONCE_LEN 12
#define HB_GCM_INFO_LEN 16
static const uint8_t hb_gcm_salt[] = {'h', 'e', 'a', 'r', 't', '-', 'v',
                                      '1', '-', 'g', 'c', 'm'}; /* no NUL */

/* Receive-side subkey cache: HB_RX_SETS sets of HB_RX_WAYS entries, LRU in
 * a set.  256 entries: every peer (HB_MAX_PEERS) fits even when all use GCM,
 * with room for a key rotation or a restart in flight. */
#define HB_RX_SETS 64 /* power of two */
#define HB_RX_SET_BITS 6
#define HB_RX_WAYS 4
#define HB_NO_SLOT 0xff

_Static_assert((1u << HB_RX_SET_BITS) == HB_RX_SETS, "HB_RX_SETS is 2^bits");
_Static_assert(HB_MAX_KEYS < HB_NO_SLOT, "slot index fits a byte");

struct hb_key {
    int used;
    uint8_t id;
    uint8_t alg;
    uint8_t key[HB_KEY_LEN]; /* GCM only (HKDF input); HMAC keeps it in mac */
    EVP_MAC_CTX *mac;        /* HMAC: keyed once, re-initialised per message */
    EVP_CIPHER_CTX *tx;      /* GCM: keyed with the subkey of tx_* below */
    int tx_ready;
    uint32_t tx_cluster;
    uint32_t tx_node;
    uint64_t tx_gen;
};

struct hb_rx_entry {
    EVP_CIPHER_CTX *ctx; /* may be allocated while !used (reset, no key) */
    uint64_t generation;
    uint64_t last_use;
    uint32_t cluster_id;
    uint32_t node_id;
    uint8_t key_id;
    uint8_t used;
};

struct hb_keyring {
    struct hb_key keys[HB_MAX_KEYS];
    uint8_t slot_of[256]; /* key id -> index in keys, HB_NO_SLOT: none */
    int send_slot;        /* -1: no send key */
    int count;
    EVP_MAC *hmac;
    EVP_CIPHER *gcm;
    EVP_KDF_CTX *hkdf;
    EVP_CIPHER_CTX *rx_spare; /* trial decryptions on a cache miss */
    uint64_t rx_clock;
    struct hb_rx_entry rx[HB_RX_SETS][HB_RX_WAYS];
};

/* ------------------------------------------------------------------ */
/* Keyring management                                                 */
/* ------------------------------------------------------------------ */

int hb_keyring_new(hb_keyring **out)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    hb_keyring *kr = calloc(1, sizeof *kr);
    if (kr == NULL)
        return -ENOMEM;
    memset(kr->slot_of, HB_NO_SLOT, sizeof kr->slot_of);
    kr->send_slot = -1;

    kr->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    kr->gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    if (kdf != NULL) {
        kr->hkdf = EVP_KDF_CTX_new(kdf); /* holds its own reference */
        EVP_KDF_free(kdf);
    }
    if (kr->hmac == NULL || kr->gcm == NULL || kr->hkdf == NULL) {
        hb_keyring_free(kr);
        return -EIO;
    }
    *out = kr;
    return 0;
}

static void rx_evict_key(hb_keyring *kr, uint8_t key_id)
{
    for (int s = 0; s < HB_RX_SETS; s++) {
        for (int w = 0; w < HB_RX_WAYS; w++) {
            struct hb_rx_entry *e = &kr->rx[s][w];
            if (e->used && e->key_id == key_id) {
                /* reset frees the provider context, which clears the key
                 * schedule; the EVP_CIPHER_CTX shell is kept for reuse */
                EVP_CIPHER_CTX_reset(e->ctx);
                e->used = 0;
            }
        }
    }
    /* the spare may hold a subkey of this key from a trial decryption */
    if (kr->rx_spare != NULL)
        EVP_CIPHER_CTX_reset(kr->rx_spare);
}

static void key_wipe(struct hb_key *k)
{
    EVP_MAC_CTX_free(k->mac);    /* clears its key copy and digest states */
    EVP_CIPHER_CTX_free(k->tx);  /* clears the key schedule */
    OPENSSL_cleanse(k->key, sizeof k->key);
    memset(k, 0, sizeof *k);
}

void hb_keyring_free(hb_keyring *kr)
{
    if (kr == NULL)
        return;
    for (int i = 0; i < HB_MAX_KEYS; i++) {
        if (kr->keys[i].used)
            key_wipe(&kr->keys[i]);
    }
    for (int s = 0; s < HB_RX_SETS; s++) {
        for (int w = 0; w < HB_RX_WAYS; w++)
            EVP_CIPHER_CTX_free(kr->rx[s][w].ctx);
    }
    EVP_CIPHER_CTX_free(kr->rx_spare);
    EVP_KDF_CTX_free(kr->hkdf);
    EVP_CIPHER_free(kr->gcm);
    EVP_MAC_free(kr->hmac);
    OPENSSL_cleanse(kr, sizeof *kr);
    free(kr);
}

int hb_keyring_add(hb_keyring *kr, uint8_t key_id, int alg, const uint8_t *key,
                   size_t key_len)
{
    if (kr == NULL || key == NULL || key_len != HB_KEY_LEN ||
        (alg != HB_AUTH_HMAC_SHA256 && alg != HB_AUTH_AES256_GCM))
        return -EINVAL;
    if (kr->slot_of[key_id] != HB_NO_SLOT)
        return -EEXIST;
    int slot = -1;
    for (int i = 0; i < HB_MAX_KEYS; i++) {
        if (!kr->keys[i].used) {
            slot = i;
            break;
        }
    }
    if (slot < 0)
        return -ENOSPC;

    struct hb_key *k = &kr->keys[slot];
    memset(k, 0, sizeof *k);
    if (alg == HB_AUTH_HMAC_SHA256) {
        OSSL_PARAM params[2];
        params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                     (char *)"SHA256", 0);
        params[1] = OSSL_PARAM_construct_end();
        k->mac = EVP_MAC_CTX_new(kr->hmac);
        if (k->mac == NULL || EVP_MAC_init(k->mac, key, key_len, params) != 1) {
            key_wipe(k);
            return -EIO;
        }
    } else {
        k->tx = EVP_CIPHER_CTX_new();
        if (k->tx == NULL) {
            key_wipe(k);
            return -EIO;
        }
        memcpy(k->key, key, HB_KEY_LEN);
    }
    k->used = 1;
    k->id = key_id;
    k->alg = (uint8_t)alg;
    kr->slot_of[key_id] = (uint8_t)slot;
    kr->count++;
    return 0;
}

int hb_keyring_remove(hb_keyring *kr, uint8_t key_id)
{
    if (kr == NULL)
        return -EINVAL;
    uint8_t slot = kr->slot_of[key_id];
    if (slot == HB_NO_SLOT)
        return -ENOENT;
    key_wipe(&kr->keys[slot]);
    kr->slot_of[key_id] = HB_NO_SLOT;
    if (kr->send_slot == (int)slot)
        kr->send_slot = -1;
    kr->count--;
    rx_evict_key(kr, key_id);
    return 0;
}

int hb_keyring_set_send(hb_keyring *kr, uint8_t key_id)
{
    if (kr == NULL)
        return -EINVAL;
    uint8_t slot = kr->slot_of[key_id];
    if (slot == HB_NO_SLOT)
        return -ENOENT;
    kr->send_slot = slot;
    return 0;
}

int hb_keyring_send_id(const hb_keyring *kr)
{
    if (kr == NULL || kr->send_slot < 0)
        return -ENOENT;
    return kr->keys[kr->send_slot].id;
}

int hb_keyring_count(const hb_keyring *kr)
{
    return kr == NULL ? 0 : kr->count;
}

const char *hb_crypto_library(void)
{
    const char *v = OpenSSL_version(OPENSSL_VERSION);
    return v != NULL ? v : "OpenSSL (unknown version)";
}

/* ------------------------------------------------------------------ */
/* Primitives (all through libcrypto)                                 */
/* ------------------------------------------------------------------ */

/* tag = HMAC-SHA256(key, data)[0:16], reusing the keyed context. */
static int hmac_tag(struct hb_key *k, const uint8_t *data, size_t len,
                    uint8_t *tag)
{
    uint8_t full[EVP_MAX_MD_SIZE];
    size_t full_len = 0;

    if (EVP_MAC_init(k->mac, NULL, 0, NULL) != 1 ||
        EVP_MAC_update(k->mac, data, len) != 1 ||
        EVP_MAC_final(k->mac, full, &full_len, sizeof full) != 1 ||
        full_len < HB_WIRE_TAG_LEN)
        return -EIO;
    memcpy(tag, full, HB_WIRE_TAG_LEN);
    return 0;
}

/* The subkey of one sender identity under one key (HKDF-SHA256). */
static int derive_subkey(hb_keyring *kr, const struct hb_key *k,
                         uint32_t cluster_id, uint32_t node_id,
                         uint64_t generation, uint8_t *subkey)
{
    uint8_t info[HB_GCM_INFO_LEN];
    OSSL_PARAM params[5];

    hb_put_be32(info, cluster_id);
    hb_put_be32(info + 4, node_id);
    hb_put_be64(info + 8, generation);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
                                                 (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
                                                  (void *)k->key, HB_KEY_LEN);
    params[2] = OSSL_PARAM_construct_octet_string(
        OSSL_KDF_PARAM_SALT, (void *)hb_gcm_salt, sizeof hb_gcm_salt);
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info,
                                                  sizeof info);
    params[4] = OSSL_PARAM_construct_end();
    int ok = EVP_KDF_derive(kr->hkdf, subkey, HB_KEY_LEN, params) == 1;
    /* the KDF context kept a copy of the key: wipe it now */
    EVP_KDF_CTX_reset(kr->hkdf);
    return ok ? 0 : -EIO;
}

/* Key a GCM context (encrypt or decrypt) with a fresh subkey. */
static int gcm_key(hb_keyring *kr, const struct hb_key *k, EVP_CIPHER_CTX *ctx,
                   int enc, uint32_t cluster_id, uint32_t node_id,
                   uint64_t generation)
{
    uint8_t subkey[HB_KEY_LEN];
    int rc = derive_subkey(kr, k, cluster_id, node_id, generation, subkey);
    if (rc == 0 &&
        EVP_CipherInit_ex2(ctx, kr->gcm, subkey, NULL, enc, NULL) != 1)
        rc = -EIO;
    OPENSSL_cleanse(subkey, sizeof subkey);
    return rc;
}

static void gcm_nonce(uint8_t *nonce, uint64_t seq)
{
    nonce[0] = nonce[1] = nonce[2] = nonce[3] = 0;
    hb_put_be64(nonce + 4, seq);
}

static int gcm_seal(EVP_CIPHER_CTX *ctx, const uint8_t *nonce,
                    const uint8_t *aad, const uint8_t *pt, size_t len,
                    uint8_t *ct, uint8_t *tag)
{
    int n = 0, fin = 0;

    if (EVP_EncryptInit_ex2(ctx, NULL, NULL, nonce, NULL) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &n, aad, HB_WIRE_HEADER_LEN) != 1)
        return -EIO;
    n = 0;
    if (len > 0 && EVP_EncryptUpdate(ctx, ct, &n, pt, (int)len) != 1)
        return -EIO;
    if (EVP_EncryptFinal_ex(ctx, ct + n, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, HB_WIRE_TAG_LEN, tag) != 1)
        return -EIO;
    return 0;
}

/* 1 when the tag verified (plaintext in pt), else 0. */
static int gcm_open(EVP_CIPHER_CTX *ctx, const uint8_t *nonce,
                    const uint8_t *aad, const uint8_t *ct, size_t len,
                    const uint8_t *tag, uint8_t *pt)
{
    int n = 0, fin = 0;

    if (EVP_DecryptInit_ex2(ctx, NULL, NULL, nonce, NULL) != 1 ||
        EVP_DecryptUpdate(ctx, NULL, &n, aad, HB_WIRE_HEADER_LEN) != 1)
        return 0;
    n = 0;
    if (len > 0 && EVP_DecryptUpdate(ctx, pt, &n, ct, (int)len) != 1)
        return 0;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, HB_WIRE_TAG_LEN,
                            (void *)tag) != 1)
        return 0;
    return EVP_DecryptFinal_ex(ctx, pt + n, &fin) == 1;
}

/* ------------------------------------------------------------------ */
/* Receive-side subkey cache                                          */
/* ------------------------------------------------------------------ */

static unsigned rx_set_of(uint8_t key_id, uint32_t cluster_id,
                          uint32_t node_id, uint64_t generation)
{
    uint64_t h = ((uint64_t)cluster_id << 32) | node_id;
    h ^= generation * 0x9e3779b97f4a7c15ull;
    h ^= key_id;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return (unsigned)(h >> (64 - HB_RX_SET_BITS));
}

static struct hb_rx_entry *rx_find(hb_keyring *kr, unsigned set,
                                   const hb_header *hdr)
{
    for (int w = 0; w < HB_RX_WAYS; w++) {
        struct hb_rx_entry *e = &kr->rx[set][w];
        if (e->used && e->node_id == hdr->node_id &&
            e->generation == hdr->generation && e->key_id == hdr->key_id &&
            e->cluster_id == hdr->cluster_id)
            return e;
    }
    return NULL;
}

/* Move the (verified) spare context into the set, evicting the least
 * recently used entry; the evicted context becomes the next spare. */
static void rx_insert(hb_keyring *kr, unsigned set, const hb_header *hdr)
{
    struct hb_rx_entry *victim = &kr->rx[set][0];
    for (int w = 0; w < HB_RX_WAYS; w++) {
        struct hb_rx_entry *e = &kr->rx[set][w];
        if (!e->used) {
            victim = e;
            break;
        }
        if (e->last_use < victim->last_use)
            victim = e;
    }
    EVP_CIPHER_CTX *old = victim->ctx;
    victim->ctx = kr->rx_spare;
    kr->rx_spare = old; /* may be NULL: allocated at the next miss */
    victim->used = 1;
    victim->key_id = hdr->key_id;
    victim->cluster_id = hdr->cluster_id;
    victim->node_id = hdr->node_id;
    victim->generation = hdr->generation;
    victim->last_use = ++kr->rx_clock;
}

/* ------------------------------------------------------------------ */
/* What wire.c calls                                                  */
/* ------------------------------------------------------------------ */

int hb_crypto_send_key(const hb_keyring *kr, uint8_t *key_id, uint8_t *alg)
{
    if (kr == NULL || kr->send_slot < 0)
        return -ENOENT;
    const struct hb_key *k = &kr->keys[kr->send_slot];
    *key_id = k->id;
    *alg = k->alg;
    return 0;
}

int hb_crypto_seal(hb_keyring *kr, const hb_header *hdr, uint8_t *pkt,
                   const uint8_t *payload, size_t payload_len)
{
    if (kr == NULL || kr->send_slot < 0)
        return -ENOENT;
    struct hb_key *k = &kr->keys[kr->send_slot];
    uint8_t *body = pkt + HB_WIRE_HEADER_LEN;
    uint8_t *tag = body + payload_len;

    if (k->alg == HB_AUTH_HMAC_SHA256) {
        if (payload_len > 0 && payload != body)
            memmove(body, payload, payload_len);
        return hmac_tag(k, pkt, HB_WIRE_HEADER_LEN + payload_len, tag);
    }

    if (!k->tx_ready || k->tx_cluster != hdr->cluster_id ||
        k->tx_node != hdr->node_id || k->tx_gen != hdr->generation) {
        k->tx_ready = 0;
        int rc = gcm_key(kr, k, k->tx, 1, hdr->cluster_id, hdr->node_id,
                         hdr->generation);
        if (rc != 0)
            return rc;
        k->tx_cluster = hdr->cluster_id;
        k->tx_node = hdr->node_id;
        k->tx_gen = hdr->generation;
        k->tx_ready = 1;
    }
    uint8_t nonce[HB_GCM_NONCE_LEN];
    gcm_nonce(nonce, hdr->seq);
    return gcm_seal(k->tx, nonce, pkt, payload, payload_len, body, tag);
}

int hb_crypto_open(hb_keyring *kr, const hb_header *hdr, const uint8_t *pkt,
                   uint8_t *payload_out)
{
    if (kr == NULL)
        return -HB_REJ_UNKNOWN_KEY;
    uint8_t slot = kr->slot_of[hdr->key_id];
    if (slot == HB_NO_SLOT || kr->keys[slot].alg != hdr->alg)
        return -HB_REJ_UNKNOWN_KEY;
    struct hb_key *k = &kr->keys[slot];
    size_t len = hdr->payload_len;
    const uint8_t *body = pkt + HB_WIRE_HEADER_LEN;
    const uint8_t *tag = body + len;

    if (k->alg == HB_AUTH_HMAC_SHA256) {
        uint8_t want[HB_WIRE_TAG_LEN];
        if (hmac_tag(k, pkt, HB_WIRE_HEADER_LEN + len, want) != 0 ||
            CRYPTO_memcmp(want, tag, HB_WIRE_TAG_LEN) != 0)
            return -HB_REJ_BAD_TAG;
        if (len > 0)
            memcpy(payload_out, body, len);
        return 0;
    }

    if (len > HB_PAYLOAD_MAX)
        return -HB_REJ_BAD_TAG; /* the codec never lets this through */
    uint8_t plain[HB_PAYLOAD_MAX];
    uint8_t nonce[HB_GCM_NONCE_LEN];
    gcm_nonce(nonce, hdr->seq);

    unsigned set = rx_set_of(hdr->key_id, hdr->cluster_id, hdr->node_id,
                             hdr->generation);
    struct hb_rx_entry *e = rx_find(kr, set, hdr);
    if (e != NULL) {
        if (!gcm_open(e->ctx, nonce, pkt, body, len, tag, plain))
            return -HB_REJ_BAD_TAG;
        e->last_use = ++kr->rx_clock;
    } else {
        /* Miss: derive into the spare and try; cache only on success. */
        if (kr->rx_spare == NULL && (kr->rx_spare = EVP_CIPHER_CTX_new()) == NULL)
            return -HB_REJ_BAD_TAG;
        if (gcm_key(kr, k, kr->rx_spare, 0, hdr->cluster_id, hdr->node_id,
                    hdr->generation) != 0 ||
            !gcm_open(kr->rx_spare, nonce, pkt, body, len, tag, plain))
            return -HB_REJ_BAD_TAG;
        rx_insert(kr, set, hdr);
    }
    if (len > 0)
        memcpy(payload_out, plain, len);
    return 0;
}
