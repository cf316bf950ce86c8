// Package docs holds the project's design documents; its test keeps
// ARCHITECTURE.md's list of import edges true to the code.
package docs
