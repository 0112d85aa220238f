#ifndef _TEST_SO_H
#define _TEST_SO_H

int __attribute__((visibility("default"))) the_answer(void);
int __attribute__((visibility("default"))) the_ignored_answer(void);
int __attribute__((visibility("default"))) await_input(void);

#endif
