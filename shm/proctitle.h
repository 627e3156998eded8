/* proctitle.h — process titles ("pgshoal: worker 3") by rewriting argv,
 * as nginx and PostgreSQL do, so ps shows what each process is. */
#ifndef PGSHOAL_PROCTITLE_H
#define PGSHOAL_PROCTITLE_H
void proctitle_init(int argc, char **argv);
void proctitle_set(const char *title);
#endif
