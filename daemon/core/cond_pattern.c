/*
 * Conditions: the regular expressions `matches` accepts, the subset that
 * POSIX ERE (glibc regcomp, C locale) and PostgreSQL's `~` read the same way
 * (docs/conditions.md). Checked before regcomp, so that a pattern the
 * evaluator accepts can never fail or match differently in SQL.
 */
#include <ctype.h>
#include <string.h>

#include "cond_int.h"

static bool pat_fail(cond_pattern_err_t *err, size_t at, const char *why)
{
    err->at = at;
    err->why = why;
    return false;
}

static bool bracket_ok(cond_pattern_err_t *err, const char *p, size_t len, size_t *i)
{
    static const char *const classes[] = {"alpha", "digit", "alnum",  "upper", "lower",
                                          "space", "punct", "xdigit", NULL};
    size_t start = *i;
    size_t j = *i + 1;
    if (j < len && p[j] == '^')
        j++;
    size_t first = j;
    for (;; j++) {
        if (j >= len)
            return pat_fail(err, start, "unterminated [");
        char ch = p[j];
        if (ch == ']' && j > first)
            break;
        if (ch == '\\')
            return pat_fail(err, j, "a backslash inside [] is not supported");
        if (ch == '[' && j + 1 < len && (p[j + 1] == '=' || p[j + 1] == '.'))
            return pat_fail(err, j, "[= and [. are not supported");
        if (ch == '[' && j + 1 < len && p[j + 1] == ':') {
            const char *end = NULL;
            for (size_t k = j + 2; k + 1 < len; k++)
                if (p[k] == ':' && p[k + 1] == ']') {
                    end = p + k;
                    break;
                }
            bool known = false;
            for (size_t c = 0; end && classes[c]; c++)
                if ((size_t)(end - (p + j + 2)) == strlen(classes[c]) &&
                    !strncmp(p + j + 2, classes[c], strlen(classes[c])))
                    known = true;
            if (!known)
                return pat_fail(err, j, "unknown character class");
            j = (size_t)(end - p) + 1;
            if (j + 1 < len && p[j + 1] == '-' && j + 2 < len && p[j + 2] != ']')
                return pat_fail(err, j + 1, "a range cannot start at a class");
            continue;
        }
        if (ch == '-' && j > first && j + 1 < len && p[j + 1] != ']') {
            char lo = p[j - 1], hi = p[j + 1];
            bool same = (isdigit((unsigned char)lo) && isdigit((unsigned char)hi)) ||
                        (islower((unsigned char)lo) && islower((unsigned char)hi)) ||
                        (isupper((unsigned char)lo) && isupper((unsigned char)hi));
            if (!same || lo > hi)
                return pat_fail(err, j - 1,
                                "ranges must be between two digits, two lower-case or two "
                                "upper-case letters, in order");
            j++; /* the range's end */
            if (j + 1 < len && p[j + 1] == '-' && j + 2 < len && p[j + 2] != ']')
                return pat_fail(err, j + 1, "a range cannot follow a range");
        }
    }
    *i = j;
    return true;
}

/* Repetition expands a pattern (a{200} is 200 states): the sum over atoms of
 * their nested repetition counts is kept small for both engines. */
#define PATTERN_MAX_COST 1000

/* State of one nesting level of a pattern (0: the whole pattern). */
typedef struct pat_level {
    long cost;        /* expansion so far */
    bool clean_start; /* nothing can be consumed before this level's branches */
    bool anchored;    /* holds ^ or $ (then the group cannot repeat) */
    bool ended;       /* a $ ends the current branch: nothing may follow */
    bool ended_any;   /* some branch of this level ended with a $ */
} pat_level_t;

/* Anchors must sit where nothing is consumed before a ^ or after a $ in the
 * same match: glibc lets a ^ match just after a newline the match consumed
 * (".^a" matches "z\na") where PostgreSQL does not. */
bool cond_pattern_check(const char *p, size_t len, cond_pattern_err_t *err)
{
    pat_level_t lv[COND_MAX_PATTERN + 2];
    int depth = 0;
    long last = 0;            /* cost of the last atom, which a quantifier repeats */
    bool branch_start = true; /* nothing yet in this alternative */
    bool quantifiable = false;
    lv[0] = (pat_level_t){.clean_start = true};
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch >= 0x80)
            return pat_fail(err, i, "only ASCII characters are supported");
        if (ch < 0x20 || ch == 0x7f)
            return pat_fail(err, i, "control characters are not supported");
        bool consumes = ch != ')' && ch != '|' && ch != '^' && ch != '$' && ch != '*' &&
                        ch != '+' && ch != '?' && ch != '{';
        if (consumes && lv[depth].ended)
            return pat_fail(err, i,
                            "nothing may follow $ (it must end the pattern or an "
                            "alternative)");
        switch (ch) {
        case '\\':
            if (i + 1 >= len || p[i + 1] == '\0' || !strchr(".[](){}*+?|^$\\/-", p[i + 1]))
                return pat_fail(err, i,
                                "backslash may only escape one of . [ ] ( ) { } * + ? | ^ $ "
                                "\\ / -");
            i++;
            branch_start = false;
            quantifiable = true;
            lv[depth].cost += last = 1;
            break;
        case '(':
            if (i + 1 < len && p[i + 1] == '?')
                return pat_fail(err, i, "(? is not supported");
            depth++;
            lv[depth] = (pat_level_t){.clean_start = branch_start && lv[depth - 1].clean_start};
            branch_start = true;
            quantifiable = false;
            break;
        case ')':
            if (depth == 0)
                return pat_fail(err, i, "unbalanced )");
            if (branch_start)
                return pat_fail(err, i, "empty group or alternative");
            last = lv[depth].cost;
            bool anchored = lv[depth].anchored, ended = lv[depth].ended_any;
            depth--;
            lv[depth].cost += last;
            lv[depth].anchored |= anchored;
            lv[depth].ended |= ended;
            lv[depth].ended_any |= ended;
            branch_start = false;
            quantifiable = !anchored;
            break;
        case '|':
            if (branch_start)
                return pat_fail(err, i, "empty alternative");
            lv[depth].ended = false;
            branch_start = true;
            quantifiable = false;
            break;
        case '*':
        case '+':
        case '?':
            if (!quantifiable)
                return pat_fail(err, i, "nothing to repeat");
            quantifiable = false;
            break;
        case '{': {
            if (!quantifiable)
                return pat_fail(err, i, "nothing to repeat");
            size_t j = i + 1;
            long lo = -1, hi = -1;
            if (j < len && isdigit((unsigned char)p[j])) {
                lo = 0;
                for (; j < len && isdigit((unsigned char)p[j]) && lo <= 255; j++)
                    lo = lo * 10 + (p[j] - '0');
                hi = lo;
                if (j < len && p[j] == ',') {
                    j++;
                    hi = -1; /* open */
                    if (j < len && isdigit((unsigned char)p[j]))
                        for (hi = 0; j < len && isdigit((unsigned char)p[j]) && hi <= 255; j++)
                            hi = hi * 10 + (p[j] - '0');
                }
            }
            if (lo < 0 || j >= len || p[j] != '}')
                return pat_fail(err, i, "expected {n}, {n,} or {n,m} (use \\{ for a {)");
            if (lo > 255 || hi > 255 || (hi >= 0 && hi < lo))
                return pat_fail(err, i, "repetition counts must be in order, at most 255");
            long times = hi < 0 ? lo + 1 : hi;
            lv[depth].cost += last * (times > 1 ? times - 1 : 0);
            if (lv[depth].cost > PATTERN_MAX_COST)
                return pat_fail(err, i, "too much repetition");
            i = j;
            quantifiable = false;
            break;
        }
        case '}':
            return pat_fail(err, i, "use \\} for a }");
        case '[':
            if (!bracket_ok(err, p, len, &i))
                return false;
            branch_start = false;
            quantifiable = true;
            lv[depth].cost += last = 1;
            break;
        case '^':
            if (!branch_start || !lv[depth].clean_start)
                return pat_fail(err, i,
                                "^ must start the pattern or an alternative (use \\^ for a ^)");
            lv[depth].anchored = true;
            branch_start = false;
            quantifiable = false;
            break;
        case '$':
            lv[depth].anchored = true;
            lv[depth].ended = lv[depth].ended_any = true;
            branch_start = false;
            quantifiable = false;
            break;
        default:
            branch_start = false;
            quantifiable = true;
            lv[depth].cost += last = 1;
            break;
        }
    }
    if (depth != 0)
        return pat_fail(err, len, "unbalanced (");
    if (branch_start)
        return pat_fail(err, len, "empty alternative");
    return true;
}
