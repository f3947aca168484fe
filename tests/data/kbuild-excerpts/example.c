// A made-up file with the kernel's #if shapes, for the region tests.
#ifndef _EXAMPLE_H
#define _EXAMPLE_H

int always(void);

#ifdef CONFIG_KSM
int merge(void)
{
	return 1;
}
#else
static inline int merge(void) { return 0; }
#endif

#if defined(CONFIG_NUMA) && IS_ENABLED(CONFIG_MIGRATION)
int numa_move(void);
#elif CONFIG_PGTABLE_LEVELS > 4
int five_levels(void);
#endif

#if SOME_MACRO_FROM_A_HEADER
int unknown(void);
#endif

#endif /* _EXAMPLE_H */
