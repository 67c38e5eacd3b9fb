"""ferry-staging-agent: checks tickets' git/svn sources out into the app's staging workspace."""
