/* IEEE 754 binary16 <-> binary32 conversion, done with integer arithmetic so
 * that it is exact, portable (no F16C or _Float16 needed) and independent of
 * the floating-point environment. float -> half rounds to nearest, ties to
 * even, like every hardware converter; overflow gives infinity. */
#include "diat-train.h"

#include <string.h>

#define F32_EXP_MASK 0x7f800000u
#define F32_ABS_MASK 0x7fffffffu
#define F16_INF 0x7c00u
#define F16_QUIET_NAN 0x7e00u

/* Smallest float that rounds to half infinity: 65520 sits exactly half-way
 * between 65504 (largest half, odd mantissa) and 65536, so the tie goes up. */
#define F32_HALF_OVERFLOW 0x477ff000u
/* 2^-14, the smallest normal half. */
#define F32_HALF_MIN_NORMAL 0x38800000u
/* 2^-25: half of the smallest subnormal half; it and anything below round to
 * zero (the tie goes to the even value 0). */
#define F32_HALF_ZERO_BELOW 0x33000000u
/* (127 - 15) << 23: moves a float exponent to the half bias. */
#define F32_TO_F16_REBIAS 0x38000000u

static uint32_t float_bits(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits;
}

static float bits_float(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Round `value >> shift` to nearest, ties to even (1 <= shift <= 31). */
static uint32_t shift_round_even(uint32_t value, unsigned shift)
{
    uint32_t kept = value >> shift;
    uint32_t dropped = value & ((1u << shift) - 1u);
    uint32_t halfway = 1u << (shift - 1u);
    if (dropped > halfway || (dropped == halfway && (kept & 1u))) kept++;
    return kept;
}

uint16_t diat_f32_to_f16(float f)
{
    uint32_t bits = float_bits(f);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    uint32_t abs_bits = bits & F32_ABS_MASK;

    if (abs_bits >= F32_EXP_MASK) {
        if (abs_bits == F32_EXP_MASK) return sign | F16_INF;
        /* NaN: keep the top of the payload, force the quiet bit so that a
         * payload living only in the dropped low bits cannot become inf. */
        return (uint16_t)(sign | F16_QUIET_NAN | ((abs_bits >> 13) & 0x3ffu));
    }
    if (abs_bits >= F32_HALF_OVERFLOW) return sign | F16_INF;

    if (abs_bits >= F32_HALF_MIN_NORMAL) {
        /* Normal half: rebias the exponent, round away the 13 low mantissa
         * bits. A carry out of the mantissa correctly bumps the exponent, and
         * cannot reach infinity because of the overflow test above. */
        return (uint16_t)(sign | shift_round_even(abs_bits - F32_TO_F16_REBIAS, 13));
    }
    if (abs_bits <= F32_HALF_ZERO_BELOW) return sign;

    /* Subnormal half m * 2^-24. With the implicit bit restored the float is
     * M * 2^(e-23), so m = M >> -(e+1), i.e. a shift of 14..24. Rounding up
     * from the largest subnormal yields 0x400, the smallest normal: correct. */
    unsigned biased_exp = abs_bits >> 23;
    uint32_t mantissa = (abs_bits & 0x7fffffu) | 0x800000u;
    return (uint16_t)(sign | shift_round_even(mantissa, 126u - biased_exp));
}

float diat_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;

    if (exponent == 0x1fu) return bits_float(sign | F32_EXP_MASK | (mantissa << 13));
    if (exponent == 0) {
        if (mantissa == 0) return bits_float(sign);
        /* Subnormal: m * 2^-24 is exact in float (10 bits, power-of-two scale). */
        float magnitude = (float)mantissa * 0x1p-24f;
        return sign ? -magnitude : magnitude;
    }
    return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}
