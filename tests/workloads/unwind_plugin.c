/*
 * unwind_plugin: a shared library without frame pointers that
 * `unwind_work dlopen` loads while it is being profiled:
 * run_plugin (unwind_work) -> plugin_work -> plugin_leaf.
 *
 * Build: gcc -O2 -g -fomit-frame-pointer -fno-inline -shared -fPIC -o libunwind_plugin.so unwind_plugin.c
 */
__attribute__((noipa)) unsigned long plugin_leaf(unsigned long x, unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	return x;
}

__attribute__((noipa)) unsigned long plugin_work(unsigned long x)
{
	return plugin_leaf(x, 1UL << 20) ^ 1;
}
