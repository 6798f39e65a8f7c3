/* Id lists as PostgreSQL array literals: format, parse, sort and dedup. */
#include <stdlib.h>
#include <string.h>

#include "journeyd/idarray.h"
#include "unit.h"

int main(void)
{
    char *lit = idarray_format(NULL, 0);
    CHECK_STR(lit, "{}");
    free(lit);

    int64_t ids[] = {7, -3, 7, 9223372036854775807LL, 1, -3};
    size_t n = idarray_unique(ids, 6);
    CHECK(n == 4);
    lit = idarray_format(ids, n);
    CHECK_STR(lit, "{-3,1,7,9223372036854775807}");

    int64_t *back = NULL;
    size_t m = 0;
    idarray_parse(lit, &back, &m);
    CHECK(m == 4 && memcmp(back, ids, 4 * sizeof(*ids)) == 0);
    free(lit);
    /* Appends; NULL, "{}" and stray characters hold nothing. */
    idarray_parse(NULL, &back, &m);
    idarray_parse("{}", &back, &m);
    idarray_parse("{ 12 , x, -}", &back, &m);
    CHECK(m == 5 && back[4] == 12);
    /* Numbers without commas between them ("1-2", "{3}{4}") all count. */
    idarray_parse("1-2 {3}{4}", &back, &m);
    CHECK(m == 9 && back[5] == 1 && back[6] == -2 && back[7] == 3 && back[8] == 4);
    free(back);
    return unit_finish("idarray");
}
