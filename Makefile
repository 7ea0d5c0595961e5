include apxs.mk
