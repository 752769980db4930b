/* Drain engine: placeholder until the engine lands (issue 4). */
#include "drain.h"
int cw_drain_wanted(const struct cw_event *ev) { (void)ev; return 0; }
int cw_drain_prepare(int fd, const struct cw_event *ev, struct cw_drain_ticket *t) { (void)fd; (void)ev; (void)t; return CW_ACTION_DRAIN_SKIPPED; }
void cw_drain_go(struct cw_drain_ticket *t, const struct cw_event *ev) { (void)t; (void)ev; }
void cw_drain_relocate_if(int fd) { (void)fd; }
void cw_drain_init(void) {}
void cw_drain_at_exit(void) {}
