/* CLOSEWATCH_MODE=warn: a human-readable warning for a risky close. */
#ifndef CW_WARN_H
#define CW_WARN_H

#include "record.h"

/* Write one warning line for ev: what is lost, and the call site. */
void cw_warn(const struct cw_event *ev);

#endif
