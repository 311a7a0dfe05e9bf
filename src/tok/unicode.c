/* unicode.c - UTF-8 validation/coding and the Unicode look-ups of the
 * WordPiece normaliser.
 *
 * UTF-8 is validated strictly (RFC 3629): the BPE pre-tokenizer hands text to
 * PCRE2 with PCRE2_NO_UTF_CHECK, so tok_utf8_len must accept exactly what
 * PCRE2's own check accepts, and a byte it rejects is treated as a lone byte
 * by every encoder. Character classes come from the generated tables in
 * unicode_data.c, searched by bisection.
 */
#include "tok/tok_int.h"

size_t tok_utf8_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0; /* continuation byte or overlong 2-byte lead */
    if (c < 0xE0) return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;  /* overlong */
        if (c == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;  /* overlong */
        if (c == 0xF4 && s[1] >= 0x90) return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

uint32_t tok_utf8_decode(const uint8_t *s, size_t len) {
    switch (len) {
    case 1:
        return s[0];
    case 2:
        return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    case 3:
        return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    default:
        return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
               ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    }
}

size_t tok_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int tok_ucat(uint32_t cp) {
    /* last range whose start <= cp */
    size_t lo = 0, hi = tok_ucat_ranges_n;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((tok_ucat_ranges[mid] >> 3) <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return (int)(tok_ucat_ranges[lo] & 7);
}

bool tok_uspace(uint32_t cp) {
    /* the Unicode White_Space property (25 code points) */
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}

uint32_t tok_ulower(uint32_t cp) {
    /* runs are sorted by start; find the last run starting at or before cp */
    size_t lo = 0, hi = tok_lower_runs_n;
    if (cp < (uint32_t)tok_lower_runs[0]) return cp;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((uint32_t)tok_lower_runs[4 * mid] <= cp)
            lo = mid;
        else
            hi = mid;
    }
    const int32_t *r = &tok_lower_runs[4 * lo];
    uint32_t start = (uint32_t)r[0], count = (uint32_t)r[1], stride = (uint32_t)r[2];
    uint32_t k = (cp - start) / stride;
    if (k < count && start + k * stride == cp) return (uint32_t)((int32_t)cp + r[3]);
    return cp;
}

uint32_t tok_unfd_first(uint32_t cp) {
    if (cp >= 0xAC00 && cp <= 0xD7A3)
        return 0x1100 + (cp - 0xAC00) / 588; /* Hangul: leading jamo */
    size_t lo = 0, hi = tok_nfd_first_n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        uint32_t c = tok_nfd_first[2 * mid];
        if (c == cp) return tok_nfd_first[2 * mid + 1];
        if (c < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return cp;
}
