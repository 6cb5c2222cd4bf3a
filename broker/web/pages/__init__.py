"""The dashboard's pages, one router per page or concern; `broker.web.app` mounts them all."""
