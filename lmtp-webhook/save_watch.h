/* save_watch.h - did this delivery save the mail anywhere? (save_watch.c) */

#ifndef SAVE_WATCH_H
#define SAVE_WATCH_H

struct module;

void    save_watch_init(struct module *module);
void    save_watch_deinit(void);
void    save_watch_start(void);
unsigned save_watch_saves(void);
unsigned save_watch_stop(void);

#endif
