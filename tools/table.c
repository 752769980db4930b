/* Aligned text tables for the closewatch reports. */
#include "table.h"
#include "util.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void add_cells(struct cw_table *t, va_list ap)
{
	cw_grow((void **)&t->cells, &t->cap, (t->nrows + 1) * (size_t)t->ncol, sizeof(char *));
	for (int i = 0; i < t->ncol; i++) {
		const char *s = va_arg(ap, const char *);
		t->cells[t->nrows * (size_t)t->ncol + (size_t)i] = cw_xstrdup(s ? s : "");
	}
	t->nrows++;
}

void cw_table_init(struct cw_table *t, const char *align, ...)
{
	memset(t, 0, sizeof(*t));
	t->ncol = (int)strlen(align);
	if (t->ncol > CW_TABLE_MAXCOL)
		t->ncol = CW_TABLE_MAXCOL;
	memcpy(t->align, align, (size_t)t->ncol);
	va_list ap;
	va_start(ap, align);
	add_cells(t, ap);
	va_end(ap);
}

void cw_table_row(struct cw_table *t, ...)
{
	va_list ap;
	va_start(ap, t);
	add_cells(t, ap);
	va_end(ap);
}

void cw_table_print(struct cw_table *t, FILE *f, int indent)
{
	size_t w[CW_TABLE_MAXCOL] = {0};
	for (size_t r = 0; r < t->nrows; r++)
		for (int c = 0; c < t->ncol; c++) {
			size_t n = strlen(t->cells[r * (size_t)t->ncol + (size_t)c]);
			if (n > w[c])
				w[c] = n;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		char **row = &t->cells[r * (size_t)t->ncol];
		int lastc = t->ncol - 1;
		while (lastc > 0 && !row[lastc][0]) /* no trailing blanks */
			lastc--;
		fprintf(f, "%*s", indent, "");
		for (int c = 0; c <= lastc; c++) {
			if (t->align[c] == 'r')
				fprintf(f, "%*s", (int)w[c], row[c]);
			else if (c == lastc)
				fputs(row[c], f);
			else
				fprintf(f, "%-*s", (int)w[c], row[c]);
			if (c != lastc)
				fputs("  ", f);
		}
		fputc('\n', f);
	}
	for (size_t i = 0; i < t->nrows * (size_t)t->ncol; i++)
		free(t->cells[i]);
	free(t->cells);
	memset(t, 0, sizeof(*t));
}
