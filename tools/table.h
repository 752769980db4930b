/* Aligned text tables for the closewatch reports. */
#ifndef CW_TABLE_H
#define CW_TABLE_H

#include <stdio.h>

#define CW_TABLE_MAXCOL 8

struct cw_table {
	int ncol;
	char align[CW_TABLE_MAXCOL];   /* 'l' or 'r' per column */
	char **cells;                  /* rows × ncol, row 0 is the header */
	size_t nrows, cap;
};

/* align: one letter per column, e.g. "lrr". Header cells follow. */
void cw_table_init(struct cw_table *t, const char *align, ...);
/* Add a row of ncol strings. */
void cw_table_row(struct cw_table *t, ...);
/* Print with two spaces between columns, indent spaces before each line; frees t. */
void cw_table_print(struct cw_table *t, FILE *f, int indent);

#endif
