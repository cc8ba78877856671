/* See interval.h; the grammar is documented in slurm_ckpt/intervals.py. */
#include "interval.h"

#include <string.h>

#define MINUTE 60L
#define HOUR (60L * MINUTE)
#define DAY (24L * HOUR)

/*
 * Numbers saturate here instead of overflowing: anything this large is far
 * beyond the 365-day limit, so the result is "too large", never a wrapped
 * small value. SATURATED * DAY * 4 still fits in a long long.
 */
#define SATURATED 1000000000000LL

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/*
 * Read one or more digits from text[*pos..end); advance *pos. Returns -1
 * when there is no digit at *pos.
 */
static long long read_number(const char *text, size_t *pos, size_t end)
{
	long long value = 0;
	size_t start = *pos;

	while (*pos < end && is_digit(text[*pos])) {
		if (value < SATURATED)
			value = value * 10 + (text[*pos] - '0');
		if (value > SATURATED)
			value = SATURATED;
		(*pos)++;
	}
	return *pos == start ? -1 : value;
}

/* [Nd][Nh][Nm][Ns], each unit at most once and in this order. */
static int parse_units(const char *text, size_t len, long long *total)
{
	static const char units[] = "dhms";
	static const long long sizes[] = { DAY, HOUR, MINUTE, 1 };
	size_t pos = 0;
	int next_unit = 0;

	*total = 0;
	while (pos < len) {
		long long n = read_number(text, &pos, len);
		const char *unit;
		int index;

		if (n < 0 || pos >= len)
			return -1;
		unit = strchr(units, text[pos]);
		if (unit == NULL || text[pos] == '\0')
			return -1;
		index = (int)(unit - units);
		if (index < next_unit)
			return -1;
		*total += n * sizes[index];
		next_unit = index + 1;
		pos++;
	}
	return next_unit > 0 ? 0 : -1;
}

/*
 * Split text[start..end) at ':' into 1..max numbers; returns how many, or
 * -1 when a part is empty or holds anything but digits.
 */
static int split_colons(const char *text, size_t start, size_t end, long long *parts, int max)
{
	size_t pos = start;
	int count = 0;

	for (;;) {
		long long n;

		if (count == max)
			return -1;
		n = read_number(text, &pos, end);
		if (n < 0)
			return -1;
		parts[count++] = n;
		if (pos == end)
			return count;
		if (text[pos] != ':')
			return -1;
		pos++;
	}
}

static const char *check_below(long long value, long long limit, const char *message)
{
	return value >= limit ? message : NULL;
}

int ckpt_parse_interval(const char *text, long *seconds, const char **reason)
{
	const char *why = NULL;
	long long total = 0;
	long long parts[3];
	size_t len, i;
	const char *dash;
	int n;

	if (reason)
		*reason = NULL;
	if (text == NULL || text[0] == '\0') {
		why = "empty";
		goto invalid;
	}
	len = strlen(text);
	if (len > CKPT_MAX_INPUT_LENGTH) {
		why = "longer than 32 characters";
		goto invalid;
	}
	for (i = 0; i < len; i++) {
		if (is_space(text[i])) {
			why = "contains whitespace";
			goto invalid;
		}
	}
	if (text[0] == '+' || text[0] == '-') {
		why = "a sign is not allowed";
		goto invalid;
	}

	if (parse_units(text, len, &total) == 0) {
		/* unit form */
	} else if (i = 0, read_number(text, &i, len) >= 0 && i == len) {
		/* A bare number is minutes, as in Slurm. */
		i = 0;
		total = read_number(text, &i, len) * MINUTE;
	} else if ((dash = strchr(text, '-')) != NULL) {
		/* D-HH[:MM[:SS]] */
		size_t d = (size_t)(dash - text);
		long long days;

		i = 0;
		days = read_number(text, &i, d);
		if (days < 0 || i != d)
			goto invalid;
		n = split_colons(text, d + 1, len, parts, 3);
		if (n < 0)
			goto invalid;
		while (n < 3)
			parts[n++] = 0;
		if ((why = check_below(parts[0], 24, "hours must be below 24")) ||
		    (why = check_below(parts[1], 60, "minutes must be below 60")) ||
		    (why = check_below(parts[2], 60, "seconds must be below 60")))
			goto invalid;
		total = days * DAY + parts[0] * HOUR + parts[1] * MINUTE + parts[2];
	} else {
		/* [HH:]MM:SS */
		long long hours = 0, minutes, secs;

		n = split_colons(text, 0, len, parts, 3);
		if (n < 2)
			goto invalid;
		if (n == 3)
			hours = parts[0];
		minutes = parts[n - 2];
		secs = parts[n - 1];
		if ((why = check_below(minutes, 60, "minutes must be below 60")) ||
		    (why = check_below(secs, 60, "seconds must be below 60")))
			goto invalid;
		total = hours * HOUR + minutes * MINUTE + secs;
	}

	if (total <= 0) {
		why = "the total is 0";
		goto invalid;
	}
	if (total > CKPT_MAX_INTERVAL_SECONDS) {
		why = "more than 365 days";
		goto invalid;
	}
	*seconds = (long)total;
	return 0;

invalid:
	if (reason)
		*reason = why;
	return -1;
}
