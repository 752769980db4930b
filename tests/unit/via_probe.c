/* via_probe CMD… — prints, for each CMD, what `closewatch run --via auto`
 * chooses: "CMD preload" or "CMD trap WHY" (tests/test_via.py). */
#include "../../tools/via.h"

#include <stdio.h>

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		char why[256];
		enum cw_via v = cw_via_auto(argv[i], why, sizeof(why));
		printf("%s %s%s%s\n", argv[i], v == CW_VIA_TRAP ? "trap" : "preload", *why ? " " : "", why);
	}
	return 0;
}
