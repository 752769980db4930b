/* cwinspect — cwprog plus one action that calls the public API itself:
 *
 *   inspect    closewatch_inspect(cur, &rec); prints one line
 *              "inspect rc=0 fd=N proto=P family=F sotype=T state=S listening=L linger=G
 *               shared=H recvq=A sendq=B unsent=C backlog=D lost=E verdict=V risky=R
 *               local=X peer=Y"
 *              or "inspect rc=-1 errno=ENAME".
 *
 * Its name contains "inspect", so the Makefile links it with -lclosewatch. */
#include <closewatch.h>

#define CWPROG_EXTRA extra_action
#include "cwprog.c"

static int extra_action(const char *act, char **args, int nargs)
{
	(void)args;
	(void)nargs;
	if (strcmp(act, "inspect") != 0)
		return -1;
	struct closewatch_record r;
	memset(&r, 0x5a, sizeof r);
	errno = 0;
	int rc = closewatch_inspect(cur, &r);
	if (rc) {
		out("inspect rc=%d errno=%s", rc, ename(errno));
		return 0;
	}
	out("inspect rc=0 fd=%d proto=%d family=%d sotype=%d state=%s listening=%d linger=%d "
	    "shared=%d recvq=%llu sendq=%llu unsent=%llu backlog=%u lost=%llu verdict=%s risky=%d "
	    "local=%s peer=%s",
	    r.fd, r.proto, r.family, r.sotype, closewatch_state_name(r.proto, r.state), r.listening,
	    r.linger, r.shared, (unsigned long long)r.recvq, (unsigned long long)r.sendq,
	    (unsigned long long)r.unsent, r.backlog, (unsigned long long)r.lost,
	    closewatch_verdict_name(r.verdict), closewatch_verdict_is_risky(r.verdict), r.local,
	    r.peer);
	return 0;
}
