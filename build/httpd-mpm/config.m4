dnl mpm_hybrid in httpd's source tree: server/mpm/hybrid/config.m4.
dnl Placed by mpm_hybrid's scripts/httpd-tree.sh from build/httpd-mpm/.
dnl
dnl httpd's configure reads every config.m4 before server/mpm/config2.m4
dnl (--with-mpm, --enable-mpms-shared) and every config3.m4 after it, so
dnl this file says whether the platform can run the MPM and reads its
dnl build-time choices; config3.m4 says how to build it.

dnl The build-time choices, as the repository's apxs build has them
dnl (make ACCEPT=, MAX_SERVER_LIMIT=, MAX_THREAD_LIMIT=).  A bad value
dnl stops configure whether or not the MPM is enabled.
AC_ARG_WITH(hybrid-accept,
APACHE_HELP_STRING(--with-hybrid-accept=STRATEGY,[Compiled-in default AcceptStrategy of the hybrid MPM: mutex | preemptive | reuseport | exclusive (default: exclusive)]),
[hybrid_accept=$withval], [hybrid_accept=exclusive])
case "$hybrid_accept" in
    mutex|preemptive|reuseport|exclusive) ;;
    *) AC_MSG_ERROR([--with-hybrid-accept=$hybrid_accept is not an accept strategy of the hybrid MPM: use one of mutex, preemptive, reuseport, exclusive]) ;;
esac

AC_ARG_WITH(hybrid-max-server-limit,
APACHE_HELP_STRING(--with-hybrid-max-server-limit=N,[Hard cap of ServerLimit in the hybrid MPM (default: 20000)]),
[hybrid_max_server_limit=$withval], [hybrid_max_server_limit=20000])
case "$hybrid_max_server_limit" in
    ""|*[[!0-9]]*|0*)
        AC_MSG_ERROR([--with-hybrid-max-server-limit=$hybrid_max_server_limit is not a positive whole number]) ;;
esac
AC_ARG_WITH(hybrid-max-thread-limit,
APACHE_HELP_STRING(--with-hybrid-max-thread-limit=N,[Hard cap of ThreadLimit in the hybrid MPM (default: 20000)]),
[hybrid_max_thread_limit=$withval], [hybrid_max_thread_limit=20000])
case "$hybrid_max_thread_limit" in
    ""|*[[!0-9]]*|0*)
        AC_MSG_ERROR([--with-hybrid-max-thread-limit=$hybrid_max_thread_limit is not a positive whole number]) ;;
esac

AC_MSG_CHECKING(if hybrid MPM supports this platform)
case $host in
    *-linux-*) hybrid_linux=yes ;;
    *) hybrid_linux=no ;;
esac
if test $forking_mpms_supported != yes; then
    AC_MSG_RESULT(no - This is not a forking platform)
elif test $hybrid_linux != yes; then
    AC_MSG_RESULT([no - it needs Linux: epoll, SO_REUSEPORT, prctl])
elif test $ac_cv_define_APR_HAS_THREADS != yes; then
    AC_MSG_RESULT(no - APR does not support threads)
elif test $have_threaded_sig_graceful != yes; then
    AC_MSG_RESULT(no - SIG_GRACEFUL cannot be used with a threaded MPM)
else
    AC_MSG_RESULT(yes)
    APACHE_MPM_SUPPORTED(hybrid, yes, yes)
fi

dnl Debian's patched tree (debian/patches/reproducible_builds.diff) builds
dnl server/buildmark.c from BUILD_DATETIME, which Debian's packaging puts
dnl in CPPFLAGS.  When this is such a tree and CPPFLAGS does not define it,
dnl define it the same way: the date of the newest debian/changelog entry,
dnl or now.
if grep BUILD_DATETIME "$srcdir/server/buildmark.c" >/dev/null 2>&1; then
    case " $CPPFLAGS " in
        *" -DBUILD_DATETIME="*) ;;
        *)
            hybrid_built=
            if test -r "$srcdir/debian/changelog"; then
                hybrid_built=`sed -n '/^ -- /{s/^.*>  *//p;q;}' "$srcdir/debian/changelog"`
                if test -n "$hybrid_built"; then
                    hybrid_built=`date -u --date="$hybrid_built" +%FT%T 2>/dev/null`
                fi
            fi
            if test -z "$hybrid_built"; then
                hybrid_built=`date -u +%FT%T`
            fi
            AC_MSG_NOTICE([server/buildmark.c needs BUILD_DATETIME (a Debian patch): adding -DBUILD_DATETIME="$hybrid_built" to CPPFLAGS])
            CPPFLAGS="$CPPFLAGS -DBUILD_DATETIME='\"$hybrid_built\"'"
            ;;
    esac
fi
