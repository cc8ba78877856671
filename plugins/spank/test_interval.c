/*
 * Check ckpt_parse_interval against the shared vector file
 * (tests/data/interval_vectors.tsv, format described in its header).
 *
 * usage: test_interval VECTORS.tsv
 * Prints one line per mismatch and a summary; exits 1 on any mismatch or a
 * malformed line, 2 when the file cannot be read.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interval.h"

int main(int argc, char **argv)
{
	char line[4096];
	FILE *f;
	int number = 0, checked = 0, failed = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s VECTORS.tsv\n", argv[0]);
		return 2;
	}
	f = fopen(argv[1], "r");
	if (f == NULL) {
		fprintf(stderr, "%s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *tab, *input, *expected, *end;
		size_t len = strlen(line);
		long want = -1, got = 0;
		const char *reason = NULL;
		int rc;

		number++;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (len == 0 || line[0] == '#')
			continue;
		/* Split at the first tab only; the input keeps its spaces. */
		tab = strchr(line, '\t');
		if (tab == NULL) {
			printf("%s:%d: malformed line\n", argv[1], number);
			failed++;
			continue;
		}
		*tab = '\0';
		input = strcmp(line, "<empty>") == 0 ? "" : line;
		expected = tab + 1;
		if (strcmp(expected, "invalid") != 0) {
			errno = 0;
			want = strtol(expected, &end, 10);
			if (errno != 0 || *end != '\0' || end == expected || want <= 0) {
				printf("%s:%d: malformed expectation '%s'\n", argv[1], number, expected);
				failed++;
				continue;
			}
		}
		rc = ckpt_parse_interval(input, &got, &reason);
		checked++;
		if (want < 0 && rc == 0) {
			printf("%s:%d: '%s' accepted as %ld, expected invalid\n", argv[1], number,
			       input, got);
			failed++;
		} else if (want >= 0 && rc != 0) {
			printf("%s:%d: '%s' rejected (%s), expected %ld\n", argv[1], number, input,
			       reason ? reason : "malformed", want);
			failed++;
		} else if (want >= 0 && got != want) {
			printf("%s:%d: '%s' gave %ld, expected %ld\n", argv[1], number, input, got,
			       want);
			failed++;
		}
	}
	fclose(f);
	printf("%d vectors checked, %d failed\n", checked, failed);
	return failed == 0 && checked > 0 ? 0 : 1;
}
