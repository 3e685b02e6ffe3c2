//! The command line of `corral image`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use crate::image;

#[derive(Args)]
pub struct ImageArgs {
    /// Image store directory; supervisord reads DATA_DIR/images.
    #[arg(long, default_value = image::DEFAULT_STORE)]
    pub store: PathBuf,
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// Output format of `image ls`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Import an image from a rootfs directory, a rootfs tarball (plain,
    /// gzip or zstd), an OCI layout directory, an oci-archive or a
    /// `docker save` archive.
    Import {
        /// Name in the store [default: the source's own image name, else
        /// its file name without extensions].
        #[arg(long)]
        name: Option<String>,
        /// Platform to take from a multi-platform image, as
        /// OS/ARCHITECTURE[/VARIANT] [default: this host's].
        #[arg(long)]
        platform: Option<String>,
        /// Rootfs directory, tarball, OCI layout directory or archive to
        /// import.
        source: PathBuf,
    },
    /// List the images of the store.
    Ls {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Print only the image names.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Print an image's record as JSON: layers with their directories,
    /// size, platform and config (entrypoint, cmd, env, working dir, user).
    Inspect {
        /// Image name.
        name: String,
    },
    /// Remove images from the store; their layers stay until `gc`, and
    /// while containers use them.
    Rm {
        /// Names of the images to remove.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove layers that no image lists, except those that a container
    /// holds a lease on (whatever its --root) or that containers under
    /// --root use, and leftovers of interrupted imports.
    Gc,
}
